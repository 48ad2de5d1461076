"""What Strata leaves in its object store: WAL objects for acknowledged records, sealed
segments as Parquet files a user can read without Strata, and reads served from those
segments once the local cache is gone. Run against the local-folder store and s3s-fs."""

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pyarrow.parquet as pq
import pytest

from kafka_util import (assert_same, consume, create_topic, produce, producer, unique,
                        wait_until, watermarks)
from storage_util import (fill_with_sealed_segments, read_segment, sample_records,
                          segment_keys, segment_records, wal_keys)


@pytest.mark.parametrize("store", ["local", "s3s-fs", "moto"], indirect=True)
def test_acknowledged_records_are_in_wal_objects(strata, store):
    broker = strata(s3=store)
    topic = unique("wal")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": str(1 << 30)})
    acked = produce(broker.bootstrap, topic, sample_records(500), acks="all")
    assert [r.offset for r in acked] == list(range(500))
    wal = wal_keys(broker)
    assert wal, f"no WAL objects in {broker.objects.describe()}: {broker.objects.keys()}"
    assert segment_keys(broker, topic) == []  # nothing sealed with a 1 GiB segment
    total = sum(len(broker.objects.read(k)) for k in wal)
    payload = sum(len(v or b"") for _, v, _ in sample_records(500))
    assert total >= payload, f"WAL objects hold {total} bytes, the values alone are {payload}"
    assert_same(consume(broker.bootstrap, topic), acked)


def test_sealed_segments_are_parquet_with_what_the_consumer_saw(strata, store, tmp_path):
    broker = strata(s3=store)
    topic = unique("sealed")
    acked = fill_with_sealed_segments(broker, topic, n=4000, min_segments=3)
    seen = consume(broker.bootstrap, topic)
    assert_same(seen, acked)
    by_offset = {r.offset: r for r in seen}

    segments = segment_keys(broker, topic)
    assert segments[0][0] == 0, f"first segment should start at offset 0: {segments}"
    expected_base = 0
    for base, key in segments:
        assert base == expected_base, f"gap or overlap before {key}: {segments}"
        table, meta = read_segment(broker, key)
        names = set(table.column_names)
        for column in ("offset", "timestamp", "key", "value", "headers", "batch_base_offset",
                       "producer_id", "producer_epoch", "base_sequence"):
            assert column in names, f"{key} lacks column {column}: {table.schema}"
        rows = segment_records(table)
        assert rows, f"{key} is empty"
        offsets = [r.offset for r in rows]
        assert offsets == list(range(base, base + len(rows))), f"{key} offsets not contiguous"
        for row in rows:
            want = by_offset[row.offset]
            assert (row.key, row.value, row.headers, row.timestamp) == (
                want.key, want.value, want.headers, want.timestamp), (
                f"{key} offset {row.offset}:\n parquet  {row}\n consumer {want}")
        # DESIGN.md: file metadata names topic, partition, first and last offset
        assert topic in meta.values(), f"{key}: topic not in key-value metadata {meta}"
        assert str(base) in meta.values() and str(base + len(rows) - 1) in meta.values(), (
            f"{key}: first/last offset {base}/{base + len(rows) - 1} not in {meta}")
        expected_base = base + len(rows)

    # DuckDB reads the same file as a plain Parquet file
    base, key = segments[1]
    path = tmp_path / "segment.parquet"
    path.write_bytes(broker.objects.read(key))
    db = duckdb.connect()
    count, first, last = db.execute(
        f"select count(*), min(\"offset\"), max(\"offset\") from read_parquet('{path}')"
    ).fetchone()
    assert (first, last) == (base, base + count - 1)
    (nkeys,) = db.execute(
        f"select count(*) from read_parquet('{path}') where key is not null").fetchone()
    # The delta-encoded timestamps and batch fields decode in DuckDB as in pyarrow
    batch_fields = ("batch_base_offset", "batch_attributes", "producer_id", "producer_epoch",
                    "base_sequence", "partition_leader_epoch")
    duck = db.execute(
        f"select epoch_ms(\"timestamp\"), {', '.join(batch_fields)} "
        f"from read_parquet('{path}') order by \"offset\"").fetchall()
    db.close()
    assert nkeys == sum(1 for o in range(first, last + 1) if by_offset[o].key is not None)
    table = pq.read_table(path)
    arrow = list(zip([by_offset[o].timestamp for o in range(first, last + 1)],
                     *(table.column(c).to_pylist() for c in batch_fields)))
    assert duck == arrow
    assert len({row[1] for row in duck}) > 1, "the segment should hold several batches"


def test_fetch_from_sealed_segment_after_cache_dropped(strata, store):
    broker = strata(s3=store)
    topic = unique("cold")
    acked = fill_with_sealed_segments(broker, topic, n=4000, min_segments=3)
    segments = segment_keys(broker, topic)
    inside = (segments[1][0] + segments[2][0]) // 2  # in the middle of the 2nd segment

    broker.stop()
    broker.drop_cache()
    assert not broker.cache_dir.exists()
    broker.start()

    assert_same(consume(broker.bootstrap, topic, start=inside, count=25),
                acked[inside:inside + 25])
    # then a full replay from offset 0, across every sealed segment and the tail
    assert watermarks(broker.bootstrap, topic) == (0, len(acked))
    assert_same(consume(broker.bootstrap, topic), acked)
    # and the broker keeps taking writes at the right offsets
    more = produce(broker.bootstrap, topic, sample_records(10, start=len(acked)))
    assert [r.offset for r in more] == list(range(len(acked), len(acked) + 10))


def test_incompressible_values_are_kept_as_they_are_and_read_back(strata, store, tmp_path):
    """Values zstd cannot shrink (already compressed or encrypted payloads) are stored in
    uncompressed pages; DuckDB and a consumer after a cold restart read them unchanged."""
    broker = strata(s3=store)
    topic = unique("incompressible")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "65536"})
    records = [(f"key-{i % 50}".encode(), os.urandom(300 + i % 200), [("seq", str(i).encode())])
               for i in range(3000)]
    acked = produce(broker.bootstrap, topic, records, acks="all", batch_num_messages=100,
                    linger_ms=2)
    wait_until(lambda: len(segment_keys(broker, topic)) >= 3, 60,
               what=f">= 3 sealed segments of {topic} in {broker.objects.describe()}")

    segments = segment_keys(broker, topic)
    for _, key in segments[:3]:
        meta = pq.ParquetFile(io.BytesIO(broker.objects.read(key))).metadata
        for rg in range(meta.num_row_groups):
            codecs = {meta.row_group(rg).column(c).path_in_schema:
                      meta.row_group(rg).column(c).compression
                      for c in range(meta.num_columns)}
            assert codecs["value"] == "UNCOMPRESSED", f"{key} row group {rg}: {codecs}"
            assert codecs["offset"] == codecs["key"] == "ZSTD", f"{key} row group {rg}: {codecs}"

    base, key = segments[1]
    path = tmp_path / "segment.parquet"
    path.write_bytes(broker.objects.read(key))
    db = duckdb.connect()
    rows = db.execute(f"select \"offset\", value from read_parquet('{path}') order by 1").fetchall()
    db.close()
    assert rows and rows[0][0] == base
    assert [(o, bytes(v)) for o, v in rows] == [(r.offset, r.value) for r in acked[base:base + len(rows)]]

    broker.stop()
    broker.drop_cache()
    broker.start()
    assert_same(consume(broker.bootstrap, topic), acked)


def test_row_groups_of_megabytes_are_read_back_after_a_cold_restart(strata, store):
    """Row groups of several MiB are fetched into reused read buffers: every value read
    back after the cache is gone is the one produced, with two consumers reading the
    same segments at once."""
    broker = strata(s3=store)
    topic = unique("large-groups")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": str(6 << 20)})
    records = [(f"k{i}".encode(), os.urandom(10_000), []) for i in range(2500)]
    acked = produce(broker.bootstrap, topic, records, acks="all")
    wait_until(lambda: len(segment_keys(broker, topic)) >= 3, 90,
               what=f">= 3 sealed segments of {topic} in {broker.objects.describe()}")
    for _, key in segment_keys(broker, topic)[:3]:
        meta = pq.ParquetFile(io.BytesIO(broker.objects.read(key))).metadata
        largest = max(meta.row_group(rg).total_byte_size for rg in range(meta.num_row_groups))
        assert largest >= 2 << 20, f"{key}: largest row group {largest} bytes"

    broker.stop()
    broker.drop_cache()
    broker.start()
    with ThreadPoolExecutor(2) as pool:
        reads = [pool.submit(consume, broker.bootstrap, topic) for _ in range(2)]
        for read in reads:
            assert_same(read.result(), acked)


def test_wal_flush_ms_paces_wal_objects_without_delaying_a_lone_acks_all_write(strata, store):
    """`wal.flush.ms` caps how often the broker writes a WAL object (one per interval on
    average, two back to back at most); it is not a wait. An acks=all write that comes
    after a quiet spell is written and acknowledged at once, and writes that follow
    each other closely are held to the interval."""
    interval = 0.3
    broker = strata(s3=store, wal_flush_ms=int(interval * 1000))
    topic = unique("flush-pace")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, acks="all", linger_ms=0)

    def acked_in() -> float:
        started = time.monotonic()
        p.produce(topic, value=b"x" * 100)
        assert p.flush(30) == 0, "write not acknowledged"
        return time.monotonic() - started

    acked_in()  # the producer's first write also fetches metadata
    lone = []
    for _ in range(3):
        time.sleep(2 * interval)
        lone.append(acked_in())
    # On a fixed 300 ms tick each would have waited 0-300 ms for it.
    assert max(lone) < interval / 3, f"lone acks=all writes took {lone} s"

    time.sleep(2 * interval)
    started = time.monotonic()
    took = [acked_in() for _ in range(6)]
    elapsed = time.monotonic() - started
    # Two may go at once; the other four wait an interval each.
    assert elapsed >= 4 * interval * 0.9, f"6 writes in {elapsed:.3f} s: {took}"
    assert max(took[:2]) < interval / 3, f"the first two waited: {took}"
