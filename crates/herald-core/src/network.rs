//! The outbound SSRF guard's rules: which addresses herald refuses to connect to
//! unless the operator's allow-list opens them. Pure: the engine applies it to the
//! address each connection actually uses (after DNS), so rebinding cannot slip past.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ValidationError;

/// A network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
        let bad =
            || ValidationError::new(field, format!("`{text}` is not a CIDR such as 10.0.0.0/8"));
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (
                a.trim().parse::<IpAddr>().map_err(|_| bad())?,
                p.trim().parse::<u8>().map_err(|_| bad())?,
            ),
            None => {
                let a = text.trim().parse::<IpAddr>().map_err(|_| bad())?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) & (0xffu8 << (8 - rest)) == 0
}

/// IPv4-mapped and IPv4-compatible IPv6 addresses as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                // ::a.b.c.d (deprecated IPv4-compatible), but not :: or ::1.
                if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
                    IpAddr::V4(Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    ))
                } else {
                    ip
                }
            }
        },
        v4 => v4,
    }
}

fn blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254.0.0/16, cloud metadata
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0 // 0.0.0.0/8, "this network"
        || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10, CGNAT
        || a >= 240 // reserved
}

fn blocked_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (first & 0xffc0) == 0xfe80 // fe80::/10, link local
        || (first & 0xffc0) == 0xfec0 // fec0::/10, site local
}

/// Whether herald refuses `ip` by default (loopback, private, link-local, CGNAT,
/// multicast, unspecified, and their IPv4-mapped IPv6 forms).
pub fn blocked_by_default(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

/// Whether herald may connect to `ip` given the operator's allow-list.
pub fn may_connect(ip: IpAddr, allow: &[Cidr]) -> bool {
    !blocked_by_default(ip) || allow.iter().any(|net| net.contains(ip))
}

/// The origin (`scheme://host[:port]`) of a URL: what ad-hoc callbacks are paced
/// and queued by. A URL that does not parse is its own origin.
pub fn origin(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

/// The IP literal a URL's host is, if it is one (in any notation the URL parser
/// understands: `127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`, ...).
pub fn literal_ip(url: &str) -> Option<IpAddr> {
    host_ip(&url::Url::parse(url).ok()?)
}

/// The address a parsed URL names literally, if its host is one.
pub fn host_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Refuses a URL whose host is a literal address herald may not connect to.
pub fn check_url(url: &str, allow: &[Cidr], field: &str) -> Result<(), ValidationError> {
    match literal_ip(url) {
        Some(ip) if !may_connect(ip, allow) => Err(ValidationError::new(
            field,
            format!("points at {ip}, a loopback, private, link-local or otherwise internal address (allow it with HERALD_ALLOW_NETWORKS)"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn internal_addresses_in_any_notation_are_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[ff02::1]/",
            "http://255.255.255.255/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(
                check_url(url, &[], "url").is_err(),
                "{url} should be refused"
            );
        }
        for url in [
            "http://93.184.216.34/",
            "https://example.com/",
            "http://[2606:4700::1111]/",
            "http://100.128.0.1/",
        ] {
            assert!(check_url(url, &[], "url").is_ok(), "{url} should pass");
        }
    }

    #[test]
    fn the_allow_list_opens_what_the_operator_chooses() {
        let allow = [
            Cidr::parse("127.0.0.0/8", "a").unwrap(),
            Cidr::parse("fd00::/8", "a").unwrap(),
        ];
        assert!(check_url("http://127.0.0.1:8080/", &allow, "url").is_ok());
        assert!(check_url("http://[::ffff:127.0.0.1]/", &allow, "url").is_ok());
        assert!(check_url("http://[fd12::1]/", &allow, "url").is_ok());
        assert!(check_url("http://10.0.0.1/", &allow, "url").is_err());
        assert!(Cidr::parse("10.0.0.0/33", "allow_networks").is_err());
        assert!(Cidr::parse("nonsense", "allow_networks").is_err());
        assert!(Cidr::parse("10.1.2.3", "allow_networks")
            .unwrap()
            .contains("10.1.2.3".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn url_checks_never_panic(url in ".*") {
            let _ = check_url(&url, &[], "url");
            let _ = crate::endpoint::validate_url(&url, "url");
        }

        #[test]
        fn v4_and_its_mapped_v6_form_agree(a: u8, b: u8, c: u8, d: u8) {
            let v4 = Ipv4Addr::new(a, b, c, d);
            prop_assert_eq!(blocked_by_default(IpAddr::V4(v4)), blocked_by_default(IpAddr::V6(v4.to_ipv6_mapped())));
        }
    }
}
