//! Instance URLs. Pool sends every instance its key, so it talks to instances over
//! https only, except on this very machine (the simulator): plain http would carry
//! the key in clear.

/// The URL of a provider domain: https, or plain http for this machine only (the
/// host itself, not a name that merely starts like it).
pub fn from_domain(domain: &str) -> String {
    if domain.starts_with("http://") || domain.starts_with("https://") {
        return domain.to_owned();
    }
    let host = domain.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(h, _)| h);
    format!("{}://{domain}", if is_loopback(host) { "http" } else { "https" })
}

/// Whether Pool may send an instance's key to `url`: https, or http to this machine.
pub fn may_carry_key(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(is_loopback),
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    matches!(host.to_ascii_lowercase().trim_end_matches('.'), "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_this_machine() {
        assert_eq!(from_domain("127.0.0.1:3002/i/abc"), "http://127.0.0.1:3002/i/abc");
        assert_eq!(from_domain("localhost:8080"), "http://localhost:8080");
        assert_eq!(from_domain("LOCALHOST"), "http://LOCALHOST");
        for remote in ["localhost.evil.tld", "127.0.0.1.evil.tld/x", "localhost-x.up.railway.app", "a.up.railway.app"] {
            assert!(from_domain(remote).starts_with("https://"), "{remote}");
        }
        assert_eq!(from_domain("http://127.0.0.1:1/x"), "http://127.0.0.1:1/x");
    }

    #[test]
    fn the_key_travels_encrypted_or_stays_on_this_machine() {
        for ok in ["https://a.up.railway.app", "http://127.0.0.1:3002/i/x", "http://localhost:1", "http://[::1]:2/"] {
            assert!(may_carry_key(ok), "{ok}");
        }
        for refused in ["http://a.up.railway.app", "http://127.0.0.1.evil.tld/", "ftp://x", "not a url", ""] {
            assert!(!may_carry_key(refused), "{refused}");
        }
    }
}
