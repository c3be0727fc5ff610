//! The SSRF address classifier: which addresses an import's source, its token realm or a
//! redirect may reach. Pure; the HTTP client applies it (`acr_oci::netguard`) and the API
//! refuses IP-literal sources with it before anything is queued.
//!
//! Link-local and cloud-metadata addresses, "this network", multicast and broadcast are always
//! refused. Private ranges (RFC 1918, 100.64.0.0/10, fc00::/7) and loopback are allowed unless
//! [`NetworkPolicy::deny_private`] (`--deny-private-networks`, for shared deployments).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which destinations source traffic may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Also refuse private ranges (RFC 1918, 100.64.0.0/10, fc00::/7) and loopback.
    pub deny_private: bool,
}

/// A destination the policy refuses; its `Display` names the address and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {addr} is refused: it is {reason}")]
pub struct AddressRefused {
    /// What was being reached ("the address", "host example.com resolves to", …).
    pub what: String,
    pub addr: IpAddr,
    pub reason: &'static str,
}

const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

impl NetworkPolicy {
    /// Why `ip` may not be reached, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        match ip {
            IpAddr::V4(v4) => self.refusal_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.refusal_v4(v4),
                None => self.refusal_v6(v6),
            },
        }
    }

    fn refusal_v4(&self, ip: Ipv4Addr) -> Option<&'static str> {
        let o = ip.octets();
        if o[0] == 169 && o[1] == 254 {
            return Some("link-local (169.254.0.0/16, where cloud instance metadata services such as 169.254.169.254 live)");
        }
        if o[0] == 0 {
            return Some("in 0.0.0.0/8 (\"this network\")");
        }
        if ip.is_broadcast() {
            return Some("the broadcast address");
        }
        if ip.is_multicast() {
            return Some("multicast (224.0.0.0/4)");
        }
        if self.deny_private {
            if ip.is_loopback() {
                return Some("loopback (127.0.0.0/8), refused by --deny-private-networks");
            }
            if ip.is_private() {
                return Some("private (RFC 1918), refused by --deny-private-networks");
            }
            if o[0] == 100 && (o[1] & 0xc0) == 64 {
                return Some(
                    "shared address space (100.64.0.0/10), refused by --deny-private-networks",
                );
            }
        }
        None
    }

    fn refusal_v6(&self, ip: Ipv6Addr) -> Option<&'static str> {
        let s = ip.segments();
        if ip == AWS_METADATA_V6 {
            return Some("a cloud instance metadata address (fd00:ec2::254)");
        }
        if (s[0] & 0xffc0) == 0xfe80 {
            return Some("link-local (fe80::/10)");
        }
        if ip.is_unspecified() {
            return Some("the unspecified address (::)");
        }
        if ip.is_multicast() {
            return Some("multicast (ff00::/8)");
        }
        if self.deny_private {
            if ip.is_loopback() {
                return Some("loopback (::1), refused by --deny-private-networks");
            }
            if (s[0] & 0xfe00) == 0xfc00 {
                return Some("unique local (fc00::/7), refused by --deny-private-networks");
            }
        }
        None
    }

    /// Refuses `host` when it is an IP literal the policy refuses (names are checked when they
    /// resolve).
    pub fn check_host(&self, host: &str) -> Result<(), AddressRefused> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        match h.parse::<IpAddr>() {
            Ok(ip) => match self.refusal(ip) {
                Some(reason) => Err(AddressRefused {
                    what: "the address".into(),
                    addr: ip,
                    reason,
                }),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    /// Refuses `ip` when the policy does.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressRefused> {
        match self.refusal(ip) {
            Some(reason) => Err(AddressRefused {
                what: "the address".into(),
                addr: ip,
                reason,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(p: NetworkPolicy, s: &str) -> bool {
        p.refusal(s.parse().expect("ip")).is_some()
    }

    #[test]
    fn always_refused() {
        let p = NetworkPolicy::default();
        for a in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::",
            "ff02::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(refused(p, a), "{a} should be refused");
        }
    }

    #[test]
    fn private_and_loopback_allowed_by_default_refused_when_denied() {
        let open = NetworkPolicy::default();
        let closed = NetworkPolicy { deny_private: true };
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!refused(open, a), "{a} should be allowed by default");
            assert!(refused(closed, a), "{a} should be refused when denied");
        }
    }

    #[test]
    fn public_allowed() {
        let closed = NetworkPolicy { deny_private: true };
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "169.253.1.1",
            "2001:4860::8888",
            "fec0::1",
        ] {
            assert!(!refused(closed, a), "{a} should be allowed");
        }
    }

    #[test]
    fn hosts() {
        let p = NetworkPolicy::default();
        let e = p.check_host("169.254.169.254").expect_err("refused");
        assert!(e.to_string().contains("169.254.169.254"), "{e}");
        assert!(e.to_string().contains("link-local"), "{e}");
        assert!(p.check_host("[fe80::1]").is_err());
        assert!(p.check_host("[fd00:ec2::254]").is_err());
        assert!(p.check_host("registry.example.com").is_ok());
        assert!(p.check_host("127.0.0.1").is_ok());
        assert!(NetworkPolicy { deny_private: true }
            .check_host("127.0.0.1")
            .is_err());
    }
}
