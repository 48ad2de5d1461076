//! The behaviour every object store behind Strata must show, run against each backend
//! (local filesystem, moto's S3) and each decorator stack, so a difference between
//! backends surfaces here rather than as a lost segment in production.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use rand::Rng;

use crate::{put_large, StoreError, MIN_PART_SIZE};

/// Runs every check against `store`, panicking on the first difference. Keys go under a
/// fresh random prefix, so the suite can run repeatedly against one bucket.
pub async fn conformance_suite(store: Arc<dyn ObjectStore>) {
    let run: u64 = rand::rng().random();
    let root = Path::from(format!("conformance-{run:016x}"));
    let key = |name: &str| Path::from(format!("{root}/{name}"));

    put_get_head(&*store, &key("plain")).await;
    ranges(&*store, &key("ranged")).await;
    not_found(&*store, &key("missing")).await;
    listing(&*store, &root).await;
    delete(&*store, &key("doomed")).await;
    conditional_create(&*store, &key("fenced")).await;
    conditional_update(&*store, &key("versioned")).await;
    multipart(&*store, &key("large")).await;
}

fn payload(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

async fn put_get_head(store: &dyn ObjectStore, p: &Path) {
    let data = payload(1000, 1);
    store.put(p, data.clone().into()).await.expect("put");
    let got = store
        .get(p)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got, data, "get returns what put stored");
    let meta = store.head(p).await.expect("head");
    assert_eq!(meta.size, 1000);
    assert_eq!(&meta.location, p);

    // Plain puts overwrite.
    let newer = payload(10, 2);
    store.put(p, newer.clone().into()).await.expect("overwrite");
    let got = store
        .get(p)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got, newer, "overwrite replaces the object");

    // An empty object is an object.
    let empty = Path::from(format!("{p}-empty"));
    store
        .put(&empty, PutPayload::new())
        .await
        .expect("put empty");
    assert_eq!(store.head(&empty).await.expect("head empty").size, 0);
}

async fn ranges(store: &dyn ObjectStore, p: &Path) {
    let data = payload(100_000, 3);
    store.put(p, data.clone().into()).await.expect("put");
    let got = store.get_range(p, 10..1010).await.expect("get_range");
    assert_eq!(got, data.slice(10..1010));
    let tail = store.get_range(p, 99_990..100_000).await.expect("tail");
    assert_eq!(tail, data.slice(99_990..));
    let wanted = [0..10, 5..20, 50_000..50_100, 99_000..100_000];
    let got = store.get_ranges(p, &wanted).await.expect("get_ranges");
    assert_eq!(got.len(), wanted.len());
    for (range, bytes) in wanted.iter().zip(&got) {
        let r = range.start as usize..range.end as usize;
        assert_eq!(bytes, &data.slice(r), "range {range:?}");
    }
}

async fn not_found(store: &dyn ObjectStore, p: &Path) {
    let err = store.get(p).await.expect_err("get of a missing key");
    assert!(
        StoreError::from(err).is_not_found(),
        "get maps to not found"
    );
    let err = store.head(p).await.expect_err("head of a missing key");
    assert!(
        StoreError::from(err).is_not_found(),
        "head maps to not found"
    );
    let err = store
        .get_range(p, 0..10)
        .await
        .expect_err("get_range of a missing key");
    assert!(
        StoreError::from(err).is_not_found(),
        "get_range maps to not found"
    );
}

async fn listing(store: &dyn ObjectStore, root: &Path) {
    let dir = Path::from(format!("{root}/list"));
    for name in ["a/1", "a/2", "b/1", "c"] {
        let p = Path::from(format!("{dir}/{name}"));
        store.put(&p, payload(5, 4).into()).await.expect("put");
    }
    let all: BTreeSet<String> = store
        .list(Some(&dir))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list");
    let expect: BTreeSet<String> = ["a/1", "a/2", "b/1", "c"]
        .iter()
        .map(|n| format!("{dir}/{n}"))
        .collect();
    assert_eq!(all, expect, "list is recursive under the prefix");

    let listed = store
        .list_with_delimiter(Some(&dir))
        .await
        .expect("list_with_delimiter");
    let prefixes: Vec<String> = listed
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(prefixes, vec![format!("{dir}/a"), format!("{dir}/b")]);
    let objects: Vec<String> = listed
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(objects, vec![format!("{dir}/c")]);

    let none: Vec<_> = store
        .list(Some(&Path::from(format!("{root}/nothing-here"))))
        .try_collect()
        .await
        .expect("list of an empty prefix");
    assert!(none.is_empty());
}

async fn delete(store: &dyn ObjectStore, p: &Path) {
    store.put(p, payload(3, 5).into()).await.expect("put");
    store.delete(p).await.expect("delete");
    let err = store.head(p).await.expect_err("head after delete");
    assert!(StoreError::from(err).is_not_found());
    // Deleting a missing key: S3 succeeds, the local filesystem says not found. Both mean
    // "gone", which is all a retention sweep needs.
    if let Err(err) = store.delete(p).await {
        assert!(
            StoreError::from(err).is_not_found(),
            "delete of a missing key"
        );
    }
}

async fn conditional_create(store: &dyn ObjectStore, p: &Path) {
    let first = payload(7, 6);
    store
        .put_opts(p, first.clone().into(), PutMode::Create.into())
        .await
        .expect("create of a new key");
    let err = store
        .put_opts(p, payload(7, 7).into(), PutMode::Create.into())
        .await
        .expect_err("create of an existing key");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "create of an existing key is AlreadyExists, got {err}"
    );
    assert!(StoreError::from(err).is_conflict());
    let got = store
        .get(p)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got, first, "the losing create changed nothing");
}

async fn conditional_update(store: &dyn ObjectStore, p: &Path) {
    let created = store.put(p, payload(8, 8).into()).await.expect("put");
    let version = UpdateVersion {
        e_tag: created.e_tag.clone(),
        version: created.version.clone(),
    };
    let opts = PutOptions::from(PutMode::Update(version.clone()));
    match store.put_opts(p, payload(8, 9).into(), opts.clone()).await {
        // The local filesystem has no compare-and-swap; the fencing that needs it runs
        // on S3-protocol stores only.
        Err(object_store::Error::NotImplemented) => return,
        Err(err) => panic!("update with the current etag failed: {err}"),
        Ok(_) => {}
    }
    let err = store
        .put_opts(p, payload(8, 10).into(), opts)
        .await
        .expect_err("update with a stale etag");
    assert!(
        matches!(err, object_store::Error::Precondition { .. }),
        "stale update is Precondition, got {err}"
    );
    let got = store
        .get(p)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got, payload(8, 9), "the stale update changed nothing");
}

async fn multipart(store: &dyn ObjectStore, p: &Path) {
    let small = payload(1000, 11);
    let small_path = Path::from(format!("{p}-small"));
    put_large(store, &small_path, small.clone(), MIN_PART_SIZE)
        .await
        .expect("put_large below the part size");
    let got = store
        .get(&small_path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got, small);

    let big = payload(2 * MIN_PART_SIZE + 12_345, 12);
    put_large(store, p, big.clone(), MIN_PART_SIZE)
        .await
        .expect("multipart put_large");
    assert_eq!(store.head(p).await.expect("head").size, big.len() as u64);
    let got = store
        .get(p)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(got == big, "multipart object matches what was uploaded");
    let mid = MIN_PART_SIZE as u64 - 10..MIN_PART_SIZE as u64 + 10;
    let across = store
        .get_range(p, mid.clone())
        .await
        .expect("range across parts");
    assert_eq!(across, big.slice(mid.start as usize..mid.end as usize));

    // Ranges of a megabyte and more, as a row group's column chunks are read: adjacent,
    // overlapping and apart.
    let mib = 1u64 << 20;
    let wanted = [
        0..mib + 7,
        mib + 7..3 * mib,
        2 * mib..2 * mib + 10,
        7 * mib..9 * mib,
    ];
    let got = store.get_ranges(p, &wanted).await.expect("large ranges");
    for (range, bytes) in wanted.iter().zip(&got) {
        let r = range.start as usize..range.end as usize;
        assert!(bytes == &big.slice(r), "range {range:?}");
    }
}
