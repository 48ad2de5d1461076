"""Checks of the test harness itself, runnable without a broker: the S3-protocol servers
start, store and list objects and stop; the hand-built wire encoding agrees with an
independent decoder (kafka-python's)."""

import botocore.exceptions
import pytest

import kwire
from harness import ObjectView, S3sFs, s3_client


@pytest.mark.parametrize("server", ["s3s_fs", "moto"])
def test_s3_server_stores_and_lists_objects(request, server):
    s3 = request.getfixturevalue(server)
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="cluster/wal/0001", Body=b"hello")
    client.put_object(Bucket=s3.bucket, Key="cluster/topics/t/0/00000000000000000000.parquet",
                      Body=b"x" * 1000)
    view = ObjectView(s3=s3, prefix="cluster")
    assert view.keys() == ["topics/t/0/00000000000000000000.parquet", "wal/0001"]
    assert view.keys("wal/") == ["wal/0001"]
    assert view.read("wal/0001") == b"hello"
    assert client.get_object(Bucket=s3.bucket, Key="cluster/wal/0001",
                             Range="bytes=1-3")["Body"].read() == b"ell"


def test_s3s_fs_checks_signatures_and_keeps_data_across_restart(s3s_fs):
    s3s_fs.client().put_object(Bucket=s3s_fs.bucket, Key="k", Body=b"v")
    wrong = s3_client(s3s_fs.endpoint, s3s_fs.access_key, "not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError):
        wrong.get_object(Bucket=s3s_fs.bucket, Key="k")
    s3s_fs.stop()
    s3s_fs.start()
    assert s3s_fs.client().get_object(Bucket=s3s_fs.bucket, Key="k")["Body"].read() == b"v"
    assert (s3s_fs.root / s3s_fs.bucket / "k").exists()


def test_crc32c_known_vector():
    assert kwire.crc32c(b"123456789") == 0xE3069283
    assert kwire.crc32c(b"") == 0


def test_record_batch_decodes_with_an_independent_reader():
    from kafka.record.default_records import DefaultRecordBatch

    recs = [(b"k0", b"v0"), (None, b"v1"), (b"k2", None), (b"k3", b"x" * 300)]
    raw = kwire.record_batch(recs, base_timestamp=1_700_000_000_000)
    batch = DefaultRecordBatch(bytearray(raw))
    assert batch.validate_crc()
    got = [(r.offset, r.key, r.value) for r in batch]
    assert got == [(i, k, v) for i, (k, v) in enumerate(recs)]
    assert not DefaultRecordBatch(bytearray(kwire.record_batch(recs, corrupt_crc=True))).validate_crc()
    wrong_count = DefaultRecordBatch(bytearray(kwire.record_batch(recs, count_override=7)))
    assert wrong_count.validate_crc()  # valid CRC, wrong count: only a count check finds it


def test_varints():
    assert kwire.varint(0) == b"\x00"
    assert kwire.varint(-1) == b"\x01"
    assert kwire.varint(1) == b"\x02"
    assert kwire.varint(300) == bytes([0xD8, 0x04])
    assert kwire.uvarint(300) == bytes([0xAC, 0x02])
    r = kwire.Reader(kwire.uvarint(123456) + kwire.uvarint(1))
    assert (r.uvarint(), r.uvarint()) == (123456, 1)


@pytest.mark.parametrize("version", [3, 9])
def test_produce_request_layout(version):
    batch = kwire.record_batch([(b"k", b"v")])
    raw = kwire.produce_request(version, 7, "topic-a", 0, batch)
    size = int.from_bytes(raw[:4], "big", signed=True)
    assert size == len(raw) - 4
    r = kwire.Reader(raw[4:])
    assert (r.i16(), r.i16(), r.i32(), r.string()) == (0, version, 7, kwire.CLIENT_ID)
    if version >= 9:
        r.tags()
        assert r.compact_string() is None
        assert (r.i16(), r.i32()) == (-1, 10000)
        assert r.uvarint() - 1 == 1 and r.compact_string() == "topic-a"
        assert r.uvarint() - 1 == 1 and r.i32() == 0
        assert r.take(r.uvarint() - 1) == batch
        r.tags(); r.tags(); r.tags()
    else:
        assert r.string() is None
        assert (r.i16(), r.i32()) == (-1, 10000)
        assert r.i32() == 1 and r.string() == "topic-a"
        assert r.i32() == 1 and r.i32() == 0
        assert r.take(r.i32()) == batch
    assert r.rest() == 0
