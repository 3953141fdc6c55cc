//! Where HTTP-push jobs may connect: public addresses only, unless the operator lists more
//! (`SWITCHBOARD_PUSH_ALLOW`). Without this guard any key with `jobs:write` could make a node
//! POST to its own loopback, the private network or a cloud metadata service and read the
//! answer back from the job.
//!
//! Names are checked on the addresses they RESOLVE to, inside the HTTP client's connector
//! ([`GuardedResolver`]): the client connects only to the addresses that passed, so a name
//! that answers differently a moment later (DNS rebinding) gains nothing. The client does not
//! resolve IP literals, so [`Egress::check_url`] checks those before a request is sent (and
//! the API refuses them already at enqueue).

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use switchboard_core::config::PushAllow;

/// The setting that allows non-public destinations, as operators spell it.
pub const ALLOW_SETTING: &str = "SWITCHBOARD_PUSH_ALLOW (file key push_allow)";

/// IPv4 ranges that are not public destinations (IANA special-purpose registry).
const V4_SPECIAL: [Ipv4Net; 15] = [
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8), // "this network"
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8), // private
    Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10), // carrier-grade NAT
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8), // loopback
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16), // link-local, cloud metadata
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12), // private
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 0, 0), 24), // IETF protocol assignments
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24), // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(192, 88, 99, 0), 24), // 6to4 relay anycast
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16), // private
    Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24), // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4), // multicast
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4), // reserved, broadcast
];

/// IPv6 ranges that are not public destinations. `::ffff:0:0/96`, `64:ff9b::/96` and
/// `2002::/16` are judged by the IPv4 address they carry instead (see [`is_public`]).
const V6_SPECIAL: [Ipv6Net; 7] = [
    Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128),
    Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128),
    Ipv6Net::new_assert(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// Global unicast: every public IPv6 address lies here (the ranges above aside), so
/// anything outside it (IPv4-compatible `::/96`, site-local `fec0::/10`, …) is not public.
const V6_GLOBAL: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
const V6_MAPPED: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
const V6_NAT64: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
const V6_6TO4: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);

/// Whether `ip` is an ordinary public address, not one of the special-purpose ranges
/// (loopback, private, link-local, CGNAT, documentation, multicast, reserved, …). IPv6
/// addresses that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !V4_SPECIAL.iter().any(|n| n.contains(&v4)),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            if V6_MAPPED.contains(&v6) || V6_NAT64.contains(&v6) {
                is_public(IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15])))
            } else if V6_6TO4.contains(&v6) {
                is_public(IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5])))
            } else {
                V6_GLOBAL.contains(&v6) && !V6_SPECIAL.iter().any(|n| n.contains(&v6))
            }
        }
    }
}

/// A destination the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused destination: `{host}` is not a public address{how}; push targets must be public \
     unless the operator allows them with {ALLOW_SETTING}"
)]
pub struct Refused {
    /// The host of the URL, as written.
    pub host: String,
    /// `""` for an address, `" (it resolves to one)"` for a name.
    how: &'static str,
}

/// The name of a push target could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DNS lookup failed for `{0}`")]
pub struct LookupFailed(pub String);

/// The egress policy of a node: public addresses plus the operator's allow-list.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    allow: Arc<PushAllow>,
}

impl Egress {
    /// Public addresses plus what `allow` lists.
    pub fn new(allow: PushAllow) -> Egress {
        Egress {
            allow: Arc::new(allow),
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allow.allows_ip(ip)
    }

    /// Checks the host of a URL that is an IP literal (names are checked when resolved);
    /// an unparsable URL passes here and fails where it is parsed.
    pub fn check_url(&self, url: &str) -> Result<(), Refused> {
        let Ok(url) = url::Url::parse(url) else {
            return Ok(());
        };
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if self.permits_ip(ip) {
            Ok(())
        } else {
            Err(Refused {
                host: url.host_str().unwrap_or_default().to_owned(),
                how: "",
            })
        }
    }

    /// The addresses of `host` a connection may use: all of them for a listed name, else
    /// those that are public or listed. None left is [`Refused`].
    pub fn filter(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let by_name = self.allow.allows_host(host);
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| by_name || self.permits_ip(a.ip()))
            .collect();
        if kept.is_empty() {
            Err(Refused {
                host: host.to_owned(),
                how: " (it resolves to one)",
            })
        } else {
            Ok(kept)
        }
    }

    /// The HTTP client of push deliveries: resolves through this policy, ignores proxy
    /// settings of the environment (a proxy would connect on our behalf, unchecked) and
    /// follows no redirects (a 3xx could point anywhere).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(self.clone())))
            .build()
            .unwrap_or_default()
    }
}

/// Resolves names with the system resolver and keeps only the addresses the policy permits.
struct GuardedResolver(Egress);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let looked_up = tokio::net::lookup_host((host.as_str(), 0)).await;
            let addrs: Vec<SocketAddr> = match looked_up {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    tracing::debug!(host, error = %e, "push target lookup failed");
                    return Err(Box::new(LookupFailed(host.clone())) as _);
                }
            };
            let kept = egress.filter(&host, addrs)?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn special_purpose_ipv4_ranges_are_not_public() {
        let refused = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ];
        for ip in refused {
            assert!(!public(ip), "{ip} must not be public");
        }
        // The neighbours of each range are ordinary addresses.
        let allowed = [
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.0",
            "192.88.98.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.101.0",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
        ];
        for ip in allowed {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn special_purpose_ipv6_ranges_are_not_public() {
        let refused = [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::127.0.0.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:0101::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "ff0e::1",
            // Outside global unicast: IPv4-compatible, site-local.
            "::127.0.0.1",
            "::8.8.8.8",
            "fec0::1",
        ];
        for ip in refused {
            assert!(!public(ip), "{ip} must not be public");
        }
        let allowed = [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:db9::1",
            "2001:db7:ffff::1",
        ];
        for ip in allowed {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn literal_urls_are_checked_against_the_allow_list() {
        let default = Egress::default();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://[::1]:9000/",
            "http://[::ffff:7f00:1]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "https://0.0.0.0/",
        ] {
            let e = default.check_url(url).unwrap_err();
            assert!(e.to_string().contains("SWITCHBOARD_PUSH_ALLOW"), "{e}");
        }
        // Names are left to the resolver.
        assert!(default.check_url("http://localhost:8080/").is_ok());
        assert!(default.check_url("https://8.8.8.8/").is_ok());

        let allow = PushAllow::parse("127.0.0.0/8, ::1").unwrap();
        let egress = Egress::new(allow);
        assert!(egress.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(egress.check_url("http://[::1]:9000/").is_ok());
        assert!(egress.check_url("http://10.0.0.1/").is_err());
    }

    #[test]
    fn resolved_addresses_are_filtered() {
        let sock = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
        let default = Egress::default();
        let e = default
            .filter("localhost", [sock("127.0.0.1"), sock("::1")])
            .unwrap_err();
        assert_eq!(e.host, "localhost");
        // A name answering with public and private addresses keeps only the public ones.
        let kept = default
            .filter("mixed.example", [sock("10.0.0.5"), sock("8.8.8.8")])
            .unwrap();
        assert_eq!(kept, vec![sock("8.8.8.8")]);

        let by_name = Egress::new(PushAllow::parse("hooks.internal").unwrap());
        assert_eq!(
            by_name
                .filter("HOOKS.internal", [sock("10.0.0.5")])
                .unwrap(),
            vec![sock("10.0.0.5")]
        );
        assert!(by_name
            .filter("other.internal", [sock("10.0.0.5")])
            .is_err());
        let by_range = Egress::new(PushAllow::parse("10.0.0.0/24").unwrap());
        assert_eq!(
            by_range
                .filter("db.internal", [sock("10.0.0.5"), sock("10.0.1.5")])
                .unwrap(),
            vec![sock("10.0.0.5")]
        );
    }
}
