use super::*;

fn http(url: &str) -> Http {
    let server = Server {
        url: url.into(),
        token: Some("sct_d_t".into()),
        ca_pem: None,
        identity_pem: None,
        timeout: std::time::Duration::from_secs(1),
        min_rate: MinRate::DEFAULT,
    };
    Http::new(&server, vec![]).unwrap()
}

fn admit(h: &Http, url: &str) -> Result<bool, String> {
    h.resolve(url).and_then(|u| h.admit(&u))
}

/// With an HTTPS server, nothing is fetched over plain HTTP (an offer or a redirect hop
/// that downgrades is refused), and only the server's own origin gets credentials.
#[test]
fn attack_plain_http_url_from_an_https_server_is_refused() {
    let h = http("https://updates.example.com");
    assert_eq!(admit(&h, "/api/v1/device/releases/r/envelope"), Ok(true));
    assert_eq!(admit(&h, "https://updates.example.com:443/p"), Ok(true));
    assert_eq!(admit(&h, "HTTPS://UPDATES.example.com/p"), Ok(true));
    assert_eq!(admit(&h, "https://cdn.example.com/p"), Ok(false));
    assert_eq!(admit(&h, "https://updates.example.com:8443/p"), Ok(false));
    for downgrade in [
        "http://updates.example.com/p",
        "http://updates.example.com:443/p",
        "http://cdn.example.com/p",
        "HTTP://cdn.example.com/p",
    ] {
        let e = admit(&h, downgrade).unwrap_err();
        assert!(e.contains("plain HTTP while the server is HTTPS"), "{e}");
    }
}

/// The origin is scheme, host and port: another port or scheme on the same host is
/// another origin and gets no token; URLs that would move the request elsewhere are
/// refused.
#[test]
fn credentials_go_to_the_server_origin_only() {
    let h = http("http://10.0.0.1:8080/");
    assert_eq!(admit(&h, "/x"), Ok(true));
    assert_eq!(admit(&h, "http://10.0.0.1:8080/x"), Ok(true));
    assert_eq!(admit(&h, "http://10.0.0.1:8081/x"), Ok(false));
    assert_eq!(admit(&h, "https://10.0.0.1:8080/x"), Ok(false));
    assert_eq!(admit(&h, "http://10.0.0.2:8080/x"), Ok(false));
    for trick in [
        "@evil.example/x",
        "//evil.example/x",
        "x",
        "file:///etc/passwd",
        "ftp://10.0.0.1:8080/x",
        "http://u:p@10.0.0.1:8080/x",
    ] {
        assert!(admit(&h, trick).is_err(), "{trick}");
    }
    assert_eq!(
        h.resolve("/a").unwrap().as_str(),
        "http://10.0.0.1:8080/a",
        "no double slash from a base URL ending in /"
    );
}
