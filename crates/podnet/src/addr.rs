//! The two address types the pod network handles: IPv4 CIDRs and Ethernet MACs, parsed from
//! outside input (Node fields, `ip -j` output) and printed as `ip` takes them.

use std::net::Ipv4Addr;

/// An IPv4 CIDR, kept with its host bits cleared (`10.42.1.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    pub fn new(addr: Ipv4Addr, prefix: u8) -> Cidr {
        let prefix = prefix.min(32);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & Cidr::mask(prefix)),
            prefix,
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Cidr::mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two ranges share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl std::str::FromStr for Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Cidr, ()> {
        let (addr, prefix) = s.split_once('/').ok_or(())?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| ())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or(())?;
        Ok(Cidr::new(addr, prefix))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An Ethernet address, printed lowercase with colons as `ip` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl std::str::FromStr for Mac {
    type Err = ();
    fn from_str(s: &str) -> Result<Mac, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(())?;
            if part.len() != 2 {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(out))
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let cases: [(&str, Option<&str>); 6] = [
            ("10.42.1.0/24", Some("10.42.1.0/24")),
            ("10.42.1.7/24", Some("10.42.1.0/24")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("10.42.1.0/33", None),
            ("10.42.1.0", None),
            ("fd00::/64", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<Cidr>().ok().map(|c| c.to_string());
            assert_eq!(got.as_deref(), want, "{input}");
        }
        let c: Cidr = "10.9.0.0/24".parse().unwrap();
        assert!(c.contains("10.9.0.200".parse().unwrap()));
        assert!(!c.contains("10.9.1.1".parse().unwrap()));
        let wide: Cidr = "10.9.0.0/16".parse().unwrap();
        assert!(c.overlaps(&wide) && wide.overlaps(&c));
        assert!(!c.overlaps(&"10.9.1.0/24".parse().unwrap()));
    }

    #[test]
    fn macs() {
        let cases: [(&str, Option<&str>); 5] = [
            ("aa:BB:0c:dd:ee:0f", Some("aa:bb:0c:dd:ee:0f")),
            ("aa:bb:cc:dd:ee", None),
            ("aa:bb:cc:dd:ee:ff:00", None),
            ("aa:bb:cc:dd:ee:f", None),
            ("zz:bb:cc:dd:ee:ff", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<Mac>().ok().map(|m| m.to_string());
            assert_eq!(got.as_deref(), want, "{input}");
        }
    }
}
