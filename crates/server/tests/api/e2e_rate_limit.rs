//! Per-key token buckets: in-process by default, shared by every node through Redis.

use crate::both;
use crate::helpers::{problem, redis_url, spawn_config, spawn_with, test_config};
use reqwest::Method;
use switchboard_core::db::Backend;

both!(per_key_limit_with_headers);
both!(needs(Redis): redis_bucket_is_shared_across_nodes);

async fn per_key_limit_with_headers(b: Backend) {
    let app = spawn_with(b, |c| {
        c.rate_limit_burst = 3;
        c.rate_limit_per_minute = 6;
    })
    .await;
    for remaining in ["2", "1", "0"] {
        let r = app.get("/v1/me").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "3");
        assert_eq!(r.headers()["ratelimit-remaining"], remaining);
    }
    let r = app.get("/v1/me").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "one token every 10 s: {retry}");
    let reset: u64 = r.headers()["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset >= retry);
    problem(r, 429, "rate-limited").await;
    // Another key has its own bucket.
    let r = app
        .req_as(Method::GET, "/v1/me", "sb_unknown_key_000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn redis_bucket_is_shared_across_nodes(b: Backend) {
    let redis = redis_url().expect("the harness checked it");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(b, dir.path()).await;
    config.redis_url = Some(redis);
    config.rate_limit_burst = 4;
    config.rate_limit_per_minute = 1;
    // Two nodes, one database, one Redis.
    let a = spawn_config(config.clone(), None).await;
    let b_node = spawn_config(config, Some(dir)).await;
    let mut allowed = 0;
    for i in 0..8 {
        let node = if i % 2 == 0 { &a } else { &b_node };
        let r = node
            .req_as(Method::GET, "/v1/me", &a.key)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => allowed += 1,
            429 => {}
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(allowed, 4, "the burst is shared, not 4 per node");
}
