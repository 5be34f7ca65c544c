//! `resource.Quantity` parsing, comparison and canonical printing.
//!
//! Owns: turning `"500m"`, `"1Gi"`, `"2e3"` into an exact value (nano precision, rounded up
//! like upstream), comparing and summing them (for limits ≥ requests and QoS), and the
//! canonical string upstream prints in messages (`"1024Mi"` → `"1Gi"`, `"0.5"` → `"500m"`).

/// The upstream parse failure for a malformed quantity.
pub const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A parsed quantity: `nanos` is the value × 10⁹ (saturating on absurd magnitudes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
    pub format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{QUANTITY_FORMAT_ERROR}")]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

fn pow_i128(base: i128, exp: u32) -> i128 {
    base.checked_pow(exp).unwrap_or(i128::MAX)
}

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(QuantityError::Format);
        }
        let (neg, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, suffix) = body.split_at(num_end);
        if num.is_empty()
            || !suffix
                .chars()
                .all(|c| "eEinumkKMGTP+-0123456789".contains(c))
        {
            return Err(QuantityError::Format);
        }
        if num.matches('.').count() > 1 || num == "." {
            return Err(QuantityError::Numeric);
        }
        // (base, exponent, format)
        let (base, exp, format): (i128, i32, Format) = match suffix {
            "" => (10, 0, Format::DecimalSi),
            "n" => (10, -9, Format::DecimalSi),
            "u" => (10, -6, Format::DecimalSi),
            "m" => (10, -3, Format::DecimalSi),
            "k" => (10, 3, Format::DecimalSi),
            "M" => (10, 6, Format::DecimalSi),
            "G" => (10, 9, Format::DecimalSi),
            "T" => (10, 12, Format::DecimalSi),
            "P" => (10, 15, Format::DecimalSi),
            "E" => (10, 18, Format::DecimalSi),
            "Ki" => (2, 10, Format::BinarySi),
            "Mi" => (2, 20, Format::BinarySi),
            "Gi" => (2, 30, Format::BinarySi),
            "Ti" => (2, 40, Format::BinarySi),
            "Pi" => (2, 50, Format::BinarySi),
            "Ei" => (2, 60, Format::BinarySi),
            s if s.starts_with(['e', 'E']) => match s[1..].parse::<i32>() {
                Ok(e) => (10, e, Format::DecimalExponent),
                Err(_) => return Err(QuantityError::Suffix),
            },
            _ => return Err(QuantityError::Suffix),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let digits = format!("{int_part}{frac_part}");
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            // Very long digit strings only lose precision far beyond nano resolution.
            let trimmed = &digits[..digits.len().min(36)];
            let extra = (digits.len() - trimmed.len()) as i32;
            let m: i128 = trimmed.parse().map_err(|_| QuantityError::Numeric)?;
            m.saturating_mul(pow_i128(10, extra.max(0) as u32))
        };
        // value = mantissa × 10^-frac × base^exp; nanos = value × 10^9.
        let frac = frac_part.len() as i32;
        let nanos = if base == 2 {
            let scaled = mantissa
                .saturating_mul(pow_i128(2, exp as u32))
                .saturating_mul(1_000_000_000);
            div_ceil(scaled, pow_i128(10, frac as u32))
        } else {
            let e = exp + 9 - frac;
            if e >= 0 {
                mantissa.saturating_mul(pow_i128(10, e as u32))
            } else if e < -38 {
                i128::from(mantissa != 0)
            } else {
                div_ceil(mantissa, pow_i128(10, (-e) as u32))
            }
        };
        Ok(Quantity {
            nanos: if neg { -nanos } else { nanos },
            format,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// True when the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.nanos % 1_000_000_000 == 0
    }

    /// Upstream's `String()`: canonical form in the quantity's own format.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs() as i128;
        let mut format = self.format;
        if format == Format::BinarySi && (abs < 1024 * 1_000_000_000 || abs % 1_000_000_000 != 0) {
            format = Format::DecimalSi;
        }
        if format == Format::BinarySi {
            let mut v = abs / 1_000_000_000;
            let mut i = 0;
            while i < 6 && v % 1024 == 0 {
                v /= 1024;
                i += 1;
            }
            return format!("{sign}{v}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i]);
        }
        // Largest exponent (multiple of 3, -9..=18) that keeps the mantissa whole.
        let mut m = abs;
        let mut e = -9;
        while e < 18 && m % 1000 == 0 {
            m /= 1000;
            e += 3;
        }
        let suffix = if format == Format::DecimalExponent {
            if e == 0 {
                String::new()
            } else {
                format!("e{e}")
            }
        } else {
            match e {
                -9 => "n",
                -6 => "u",
                -3 => "m",
                0 => "",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                _ => "E",
            }
            .to_string()
        };
        format!("{sign}{m}{suffix}")
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    if b == 0 {
        return a;
    }
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

/// Canonical form of a quantity string, or the input unchanged when it does not parse.
pub fn canonical(s: &str) -> String {
    Quantity::parse(s)
        .map(|q| q.canonical())
        .unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_canonicalize() {
        let cases = [
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("512", "512"),
            ("100Mi", "100Mi"),
            ("1e3", "1e3"),
            ("1.5Gi", "1536Mi"),
            ("0", "0"),
            ("-1", "-1"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("123Mi", "123Mi"),
            ("0.1m", "100u"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input), want, "{input}");
        }
    }

    #[test]
    fn compare_and_errors() {
        let q = |s| {
            Quantity::parse(s).unwrap_or(Quantity {
                nanos: -999,
                format: Format::DecimalSi,
            })
        };
        assert!(q("1") > q("999m"));
        assert_eq!(q("1Ki").nanos, q("1024").nanos);
        assert_eq!(q("1G").nanos, q("1e9").nanos);
        assert_eq!(Quantity::parse("abc"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1Qi"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1KiB"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1iK"), Err(QuantityError::Suffix));
        assert!(q("1.5").nanos == 1_500_000_000 && !q("1.5").is_integer());
    }
}
