//! The upstream resolvers: the `nameserver` lines of the host's resolv.conf (the agent's
//! `--resolv-conf`), as CoreDNS's `forward . /etc/resolv.conf` reads them. Pure.

use std::net::{IpAddr, SocketAddr};

/// The DNS port upstream resolvers are asked on.
pub const DNS_PORT: u16 = 53;

/// The nameservers `text` names, in order. Lines that are not `nameserver <address>` and
/// addresses that do not parse are skipped; a scoped IPv6 address (`fe80::1%eth0`) loses
/// its scope.
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr = words.next()?;
            let addr = addr.split('%').next().unwrap_or(addr);
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, DNS_PORT))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameserver_lines() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("nameserver 127.0.0.1\n", &["127.0.0.1:53"]),
            (
                "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver ::1\noptions ndots:2\n",
                &["10.0.0.2:53", "[::1]:53"],
            ),
            ("nameserver   192.0.2.1  # trailing\n", &["192.0.2.1:53"]),
            ("nameserver fe80::1%eth0\n", &["[fe80::1]:53"]),
            ("nameserver not-an-ip\nnameserver\n;nameserver 1.2.3.4\n", &[]),
        ];
        for (text, want) in cases {
            let got: Vec<String> = nameservers(text).iter().map(|a| a.to_string()).collect();
            assert_eq!(got, *want, "{text:?}");
        }
    }
}
