//! The certificate a signer issues, encoded in DER as Go's `x509.CreateCertificate` writes
//! it from upstream's template (`pkg/controller/certificates/authority`): version 3, a
//! random 63-bit serial, the CA's subject as issuer, the request's subject re-encoded as
//! `pkix.Name.ToRDNSequence` does (C, ST, L, street, postal code, O, OU, CN, serial
//! number; all values of one type in one multi-valued RDN), the request's public key, and
//! the extensions key usage (critical), extended key usage, basic constraints (critical,
//! not a CA), authority key identifier and subject alternative names, in Go's order.
//!
//! Why not rcgen's `CertificateParams`: it keeps one value per attribute type, so a client
//! certificate for several groups (several O) could not be issued as upstream issues it.
//! rcgen still holds and uses the CA key (`SigningKey`).

use std::net::IpAddr;

use api::certificates::{Request, Subject};
use jiff::Timestamp;
use rcgen::{KeyPair, SigningKey};
use x509_parser::extensions::ParsedExtension;
use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the CA certificate: {0}")]
    CaCert(String),
    #[error("reading the CA key: {0}")]
    CaKey(rcgen::Error),
    #[error("the CA key's algorithm is not supported for signing")]
    Algorithm,
    #[error("signing: {0}")]
    Sign(rcgen::Error),
    #[error("unrecognized usage values: {0:?}")]
    Usages(Vec<String>),
}

/// The cluster CA as a signer.
pub struct Ca {
    key: KeyPair,
    issuer: Vec<u8>,
    key_id: Option<Vec<u8>>,
    not_after: Timestamp,
    algorithm: &'static [u64],
    rsa: bool,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl Ca {
    /// The CA from its PEM certificate and PEM (PKCS#8) key (`DIR/pki/ca.crt`, `ca.key`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, Error> {
        let key = KeyPair::from_pem(key_pem).map_err(Error::CaKey)?;
        let (algorithm, rsa): (&'static [u64], bool) = match key.algorithm() {
            a if a == &rcgen::PKCS_ECDSA_P256_SHA256 => (&[1, 2, 840, 10045, 4, 3, 2], false),
            a if a == &rcgen::PKCS_ECDSA_P384_SHA384 => (&[1, 2, 840, 10045, 4, 3, 3], false),
            a if a == &rcgen::PKCS_ED25519 => (&[1, 3, 101, 112], false),
            a if a == &rcgen::PKCS_RSA_SHA256 => (&[1, 2, 840, 113549, 1, 1, 11], true),
            _ => return Err(Error::Algorithm),
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| Error::CaCert(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| Error::CaCert(e.to_string()))?;
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        let not_after = Timestamp::from_second(cert.validity().not_after.timestamp())
            .map_err(|e| Error::CaCert(e.to_string()))?;
        Ok(Ca {
            key,
            issuer: cert.tbs_certificate.subject.as_raw().to_vec(),
            key_id,
            not_after,
            algorithm,
            rsa,
        })
    }

    /// When the CA itself expires: no certificate outlives it.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// The DER certificate for `req`, valid `not_before..not_after`, with `usages` (the
    /// CSR's `spec.usages`, upstream's names).
    pub fn sign(
        &self,
        req: &Request,
        usages: &[String],
        serial: u64,
        not_before: Timestamp,
        not_after: Timestamp,
    ) -> Result<Vec<u8>, Error> {
        let (key_usage, ext_key_usages) = key_usages(usages)?;
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
                w.next().write_u64(serial & (u64::MAX >> 1));
                self.write_algorithm(w.next());
                w.next().write_der(&self.issuer);
                w.next().write_sequence(|w| {
                    write_time(w.next(), not_before);
                    write_time(w.next(), not_after);
                });
                write_subject(w.next(), &req.subject);
                w.next().write_der(&req.public_key_info);
                w.next().write_tagged(Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        if key_usage != 0 {
                            write_extension(w.next(), &[2, 5, 29, 15], true, |w| {
                                write_key_usage(w, key_usage)
                            });
                        }
                        if !ext_key_usages.is_empty() {
                            write_extension(w.next(), &[2, 5, 29, 37], false, |w| {
                                w.write_sequence(|w| {
                                    for oid in &ext_key_usages {
                                        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                                    }
                                })
                            });
                        }
                        write_extension(w.next(), &[2, 5, 29, 19], true, |w| {
                            w.write_sequence(|_| {})
                        });
                        if let Some(id) = &self.key_id {
                            write_extension(w.next(), &[2, 5, 29, 35], false, |w| {
                                w.write_sequence(|w| {
                                    w.next().write_tagged_implicit(Tag::context(0), |w| {
                                        w.write_bytes(id)
                                    })
                                })
                            });
                        }
                        if req.has_sans() {
                            let critical = req.subject == Subject::default();
                            write_extension(w.next(), &[2, 5, 29, 17], critical, |w| {
                                write_sans(w, req)
                            });
                        }
                    })
                });
            })
        });
        let signature = self.key.sign(&tbs).map_err(Error::Sign)?;
        Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                self.write_algorithm(w.next());
                w.next().write_bitvec_bytes(&signature, signature.len() * 8);
            })
        }))
    }

    fn write_algorithm(&self, w: DERWriter) {
        w.write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(self.algorithm));
            if self.rsa {
                w.next().write_null();
            }
        })
    }
}

/// Go's `KeyUsage` bits (bit 0 = digital signature) and the extended key usages, sorted
/// by Go's `ExtKeyUsage` order, from upstream's usage names (`keyUsagesFromStrings`).
fn key_usages(usages: &[String]) -> Result<(u16, Vec<&'static [u64]>), Error> {
    const EKU: &[(&str, usize, &[u64])] = &[
        ("any", 0, &[2, 5, 29, 37, 0]),
        ("server auth", 1, &[1, 3, 6, 1, 5, 5, 7, 3, 1]),
        ("client auth", 2, &[1, 3, 6, 1, 5, 5, 7, 3, 2]),
        ("code signing", 3, &[1, 3, 6, 1, 5, 5, 7, 3, 3]),
        ("email protection", 4, &[1, 3, 6, 1, 5, 5, 7, 3, 4]),
        ("s/mime", 4, &[1, 3, 6, 1, 5, 5, 7, 3, 4]),
        ("ipsec end system", 5, &[1, 3, 6, 1, 5, 5, 7, 3, 5]),
        ("ipsec tunnel", 6, &[1, 3, 6, 1, 5, 5, 7, 3, 6]),
        ("ipsec user", 7, &[1, 3, 6, 1, 5, 5, 7, 3, 7]),
        ("timestamping", 8, &[1, 3, 6, 1, 5, 5, 7, 3, 8]),
        ("ocsp signing", 9, &[1, 3, 6, 1, 5, 5, 7, 3, 9]),
        ("microsoft sgc", 10, &[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
        ("netscape sgc", 11, &[2, 16, 840, 1, 113730, 4, 1]),
    ];
    let mut bits = 0u16;
    let mut ext = std::collections::BTreeMap::new();
    let mut unknown = Vec::new();
    for u in usages {
        let bit = match u.as_str() {
            "signing" | "digital signature" => Some(0),
            "content commitment" => Some(1),
            "key encipherment" => Some(2),
            "data encipherment" => Some(3),
            "key agreement" => Some(4),
            "cert sign" => Some(5),
            "crl sign" => Some(6),
            "encipher only" => Some(7),
            "decipher only" => Some(8),
            _ => None,
        };
        if let Some(b) = bit {
            bits |= 1 << b;
        } else if let Some((_, rank, oid)) = EKU.iter().find(|(n, _, _)| n == u) {
            ext.insert(*rank, *oid);
        } else {
            unknown.push(u.clone());
        }
    }
    if !unknown.is_empty() {
        return Err(Error::Usages(unknown));
    }
    Ok((bits, ext.into_values().collect()))
}

/// Go's `marshalKeyUsage`: bit n of the value is BIT STRING bit n, trailing zeros dropped.
fn write_key_usage(w: DERWriter, bits: u16) {
    let bytes = [
        (bits as u8).reverse_bits(),
        ((bits >> 8) as u8).reverse_bits(),
    ];
    let len = if bytes[1] != 0 { 2 } else { 1 };
    let last = bytes[len - 1];
    let unused = last.trailing_zeros().min(7) as usize;
    w.write_bitvec_bytes(&bytes[..len], len * 8 - unused);
}

fn write_extension(w: DERWriter, oid: &[u64], critical: bool, value: impl FnOnce(DERWriter)) {
    let der = yasna::construct_der(value);
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(&der);
    })
}

/// UTCTime through 2049, GeneralizedTime after, as Go chooses.
fn write_time(w: DERWriter, t: Timestamp) {
    let dt = t.to_zoned(jiff::tz::TimeZone::UTC);
    let year = dt.year();
    let (tag, text) = if (1950..2050).contains(&year) {
        (
            0x17u8,
            format!("{:02}{}", year % 100, dt.strftime("%m%d%H%M%SZ")),
        )
    } else {
        (0x18u8, format!("{:04}{}", year, dt.strftime("%m%d%H%M%SZ")))
    };
    let mut der = vec![tag, text.len() as u8];
    der.extend_from_slice(text.as_bytes());
    w.write_der(&der);
}

/// Go's `asn1` default string type: PrintableString when every character is one, else
/// UTF8String.
fn write_string(w: DERWriter, s: &str) {
    let printable = s.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b' ' | b'\'' | b'(' | b')' | b'+' | b',' | b'-' | b'.' | b'/' | b':' | b'=' | b'?'
            )
    });
    if printable {
        w.write_printable_string(s);
    } else {
        w.write_utf8_string(s);
    }
}

fn write_subject(w: DERWriter, s: &Subject) {
    let single = |v: &String| {
        if v.is_empty() {
            Vec::new()
        } else {
            vec![v.clone()]
        }
    };
    let rdns: [(&[u64], Vec<String>); 9] = [
        (&[2, 5, 4, 6], s.country.clone()),
        (&[2, 5, 4, 8], s.province.clone()),
        (&[2, 5, 4, 7], s.locality.clone()),
        (&[2, 5, 4, 9], s.street_address.clone()),
        (&[2, 5, 4, 17], s.postal_code.clone()),
        (&[2, 5, 4, 10], s.organization.clone()),
        (&[2, 5, 4, 11], s.organizational_unit.clone()),
        (&[2, 5, 4, 3], single(&s.common_name)),
        (&[2, 5, 4, 5], single(&s.serial_number)),
    ];
    w.write_sequence(|w| {
        for (oid, values) in &rdns {
            if values.is_empty() {
                continue;
            }
            // DER sorts a SET OF by encoding, as Go's encoding/asn1 does.
            let mut atvs: Vec<Vec<u8>> = values
                .iter()
                .map(|v| {
                    yasna::construct_der(|w| {
                        w.write_sequence(|w| {
                            w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                            write_string(w.next(), v);
                        })
                    })
                })
                .collect();
            atvs.sort();
            w.next().write_set(|w| {
                for atv in &atvs {
                    w.next().write_der(atv);
                }
            });
        }
    })
}

/// Go's `marshalSANs`: DNS names, emails, IP addresses, URIs.
fn write_sans(w: DERWriter, req: &Request) {
    w.write_sequence(|w| {
        for d in &req.dns_names {
            w.next()
                .write_tagged_implicit(Tag::context(2), |w| w.write_ia5_string(d));
        }
        for e in &req.email_addresses {
            w.next()
                .write_tagged_implicit(Tag::context(1), |w| w.write_ia5_string(e));
        }
        for ip in &req.ip_addresses {
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            w.next()
                .write_tagged_implicit(Tag::context(7), |w| w.write_bytes(&bytes));
        }
        for u in &req.uris {
            w.next()
                .write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(u));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_map_to_go_bits_and_sorted_ekus() {
        let u = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (bits, ekus) = key_usages(&u(&[
            "client auth",
            "key encipherment",
            "digital signature",
            "server auth",
        ]))
        .expect("known");
        assert_eq!(bits, 0b101);
        assert_eq!(
            ekus,
            vec![
                &[1, 3, 6, 1, 5, 5, 7, 3, 1][..],
                &[1, 3, 6, 1, 5, 5, 7, 3, 2][..]
            ]
        );
        assert!(matches!(key_usages(&u(&["flying"])), Err(Error::Usages(v)) if v == ["flying"]));
    }

    #[test]
    fn key_usage_bit_string_is_minimal() {
        let der = yasna::construct_der(|w| write_key_usage(w, 0b101));
        // BIT STRING, 2 bytes: 5 unused bits, 1010_0000.
        assert_eq!(der, [0x03, 0x02, 0x05, 0xa0]);
        let der = yasna::construct_der(|w| write_key_usage(w, 1));
        assert_eq!(der, [0x03, 0x02, 0x07, 0x80]);
    }

    #[test]
    fn times_are_utc_until_2050() {
        let t = |s: &str| s.parse::<Timestamp>().expect("ts");
        let der = yasna::construct_der(|w| write_time(w, t("2026-12-07T22:10:05Z")));
        assert_eq!(&der[..2], &[0x17, 13]);
        assert_eq!(&der[2..], b"261207221005Z");
        let der = yasna::construct_der(|w| write_time(w, t("2124-01-01T00:00:00Z")));
        assert_eq!(&der[2..], b"21240101000000Z");
    }
}
