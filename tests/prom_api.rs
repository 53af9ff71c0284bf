//! Prometheus' query API on Pulse (`/api/v1/query`, `/api/v1/query_range`): Prometheus'
//! parameters and response shapes over the window store, so Grafana can read Pulse as a
//! Prometheus data source.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{app, call, fast_simulated, get, poll_until, urlencode};

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[actix::test]
async fn instant_and_range_queries_answer_in_prometheus_shapes() {
    let (service, pipeline) = fast_simulated();
    let app = app(&service, &pipeline);
    let temp = urlencode("DCGM_FI_DEV_GPU_TEMP");
    let v = poll_until(&app, &format!("/api/v1/query?query={temp}"), |v| {
        v["data"]["result"].as_array().is_some_and(|r| r.len() == 3)
    })
    .await;
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    common::schema::assert_conforms(&v, "PromSuccess_QueryData");
    let first = &v["data"]["result"][0];
    assert_eq!(first["metric"]["__name__"], "DCGM_FI_DEV_GPU_TEMP");
    assert!(first["value"][0].is_f64(), "{first}");
    let celsius: f64 = first["value"][1].as_str().unwrap().parse().unwrap();
    assert!((10.0..120.0).contains(&celsius), "{first}");

    // PromQL with aggregation, a scalar, and an explicit time (RFC 3339 and seconds).
    let q = urlencode("count by (Hostname) (DCGM_FI_DEV_GPU_TEMP)");
    let (_, v) = call(&app, get(&format!("/api/v1/query?query={q}"))).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "3", "{v}");
    let (_, v) = call(
        &app,
        get("/api/v1/query?query=1%2B1&time=2023-11-14T22:13:20Z"),
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!({"resultType": "scalar", "result": [1700000000.0, "2"]})
    );
    common::schema::assert_conforms(&v, "PromSuccess_QueryData");

    // A range over the last 2 s at 0.5 s: one series per GPU, points at each step.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let end = now_s();
    let uri = format!(
        "/api/v1/query_range?query={}&start={}&end={end}&step=0.5",
        urlencode("max_over_time(DCGM_FI_DEV_GPU_TEMP[1s])"),
        end - 1.0
    );
    let (status, v) = call(&app, get(&uri)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    common::schema::assert_conforms(&v, "PromSuccess_QueryData");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 3, "{v}");
    let values = series[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 3, "{v}");
    let step = values[1][0].as_f64().unwrap() - values[0][0].as_f64().unwrap();
    assert!((step - 0.5).abs() < 1e-6, "{v}");

    // Grafana posts its queries form-encoded.
    let form = format!("query={temp}&start={}&end={end}&step=1", end - 1.0);
    let req = Request::post("/api/v1/query_range")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, v) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 3);
}

#[actix::test]
async fn bad_queries_get_prometheus_errors() {
    let (service, pipeline) = fast_simulated();
    let app = app(&service, &pipeline);
    for (uri, status, kind, mentions) in [
        (
            "/api/v1/query",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "query",
        ),
        (
            "/api/v1/query?query=rate(up%5B5m%5D",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "query",
        ),
        (
            "/api/v1/query?query=up&time=yesterday",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "time",
        ),
        (
            "/api/v1/query_range?query=up&start=10&end=5&step=1",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "end",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=100000&step=1",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "11,000",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=10",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "step",
        ),
        (
            "/api/v1/query_range?query=up%5B5m%5D&start=0&end=10&step=1",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "range query",
        ),
        (
            "/api/v1/query?query=histogram_count(up)",
            StatusCode::BAD_REQUEST,
            "bad_data",
            "histogram_count",
        ),
    ] {
        let (got, v) = call(&app, get(uri)).await;
        assert_eq!(got, status, "{uri}: {v}");
        assert_eq!(v["status"], "error", "{uri}: {v}");
        assert_eq!(v["errorType"], kind, "{uri}: {v}");
        common::schema::assert_conforms(&v, "PromErrorBody");
        assert!(
            v["error"].as_str().unwrap().contains(mentions),
            "{uri}: {v}"
        );
    }
    // A POST whose body is not a form: Prometheus' error shape too, not axum's text.
    let (got, v) = call(
        &app,
        common::post_json("/api/v1/query", r#"{"query":"up"}"#),
    )
    .await;
    assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert_eq!(v["errorType"], "bad_data", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("x-www-form-urlencoded"),
        "{v}"
    );
    // Evaluation errors are 422 `execution`, as in Prometheus.
    let q = urlencode("label_replace(vector(1), \"a\", \"b\", \"c\", \"(\")");
    let (got, v) = call(&app, get(&format!("/api/v1/query?query={q}"))).await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errorType"], "execution");
}
