//! Server-side request forgery: a webhook URL must be `https` and reach only public
//! addresses, unless `WEBHOOK_ALLOW_PRIVATE=true` (tests, local development). Checked when an
//! endpoint is saved and again at every delivery, through the resolver the delivery client
//! connects with — so a name that later resolves to a private address (DNS rebinding) is
//! refused at connect time, not just at registration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::AppError;

/// Longest a name may take to resolve when an endpoint is saved.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `ip` is an ordinary public unicast address: not loopback, private, link-local,
/// unique-local, unspecified, multicast, broadcast, shared (CGNAT), documentation or
/// reserved; IPv4 inside IPv6 (mapped, compatible, NAT64) is judged as the IPv4 it carries.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d).
    if (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4]) || s[..6] == [0; 6] {
        let [.., hi, lo] = s;
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
}

/// The IP a URL's host spells literally, if it does (`[::1]` included).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn refused(message: impl Into<String>) -> AppError {
    AppError::BadInput(message.into())
}

/// Parses and checks a webhook URL as it is saved: scheme, and (unless private addresses are
/// allowed) every address its host resolves to now. `BAD_USER_INPUT` if refused.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Url, AppError> {
    let url = Url::parse(raw.trim()).map_err(|e| refused(format!("url is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => {
            return Err(refused(format!("url must use https, not {other}")));
        }
    }
    let Some(host) = url.host_str() else {
        return Err(refused("url has no host"));
    };
    if allow_private {
        return Ok(url);
    }
    if let Some(ip) = literal_ip(&url) {
        return if is_public(ip) {
            Ok(url)
        } else {
            Err(refused(format!(
                "url points at a non-public address ({ip})"
            )))
        };
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| refused(format!("url: {host} did not resolve in time")))?
            .map_err(|e| refused(format!("url: {host} does not resolve: {e}")))?
            .collect();
    if addrs.is_empty() {
        return Err(refused(format!("url: {host} has no address")));
    }
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(refused(format!(
            "url: {host} resolves to a non-public address ({})",
            bad.ip()
        )));
    }
    Ok(url)
}

/// Whether a delivery may go to `url` now, as far as its spelling tells: a literal IP must be
/// public (names are checked by [`PublicOnly`] when the client connects).
pub fn deliverable(url: &Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(format!("{} is not https", url.scheme()));
    }
    match literal_ip(url) {
        Some(ip) if !is_public(ip) => Err(format!("{ip} is not a public address")),
        _ => Ok(()),
    }
}

/// The delivery client's resolver: resolves as the system does and refuses a name with any
/// non-public address, so the connection can only go where the check allowed.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(
                    format!("{host} resolves to a non-public address ({})", bad.ip()).into(),
                );
            }
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for text in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::a00:1",
            "::127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(text)), "{text} should not be public");
        }
        for text in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(text)), "{text} should be public");
        }
    }

    #[tokio::test]
    async fn only_https_to_public_addresses_unless_private_is_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "https://10.0.0.1/hook",
            "https://[::1]/hook",
            "https://[::ffff:192.168.0.1]/",
            "http://93.184.216.34/",
            "ftp://93.184.216.34/",
            "https://localhost/hook",
            "not a url",
        ] {
            assert!(
                check_url(url, false).await.is_err(),
                "{url} should be refused"
            );
        }
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
        assert!(check_url("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check_url("ftp://127.0.0.1/", true).await.is_err());
        let url = Url::parse("https://127.0.0.1/").expect("url");
        assert!(deliverable(&url, false).is_err());
        assert!(deliverable(&url, true).is_ok());
    }
}
