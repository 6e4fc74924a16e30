//! Kubernetes resource quantities (`100m`, `128Mi`, `1e3`) parsed, rounded
//! and printed as upstream's `k8s.io/apimachinery/pkg/api/resource.Quantity`.
//! Entry point: [`Quantity::parse`] (or `str::parse`).

use std::fmt;
use std::str::FromStr;

/// Why a quantity did not parse; `Display` is upstream's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Upstream's `ErrFormatWrong`.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    /// Upstream's `ErrNumeric`.
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    /// Upstream's `ErrSuffix`: suffix characters that spell no known suffix (`1KK`).
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// How a quantity prints, chosen by the suffix it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `e3`, `E-2`.
    DecimalExponent,
    /// `Ki`, `Mi`, ... `Ei`.
    BinarySI,
    /// `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSI,
}

/// A fixed-point number `mantissa × 10^scale` and its print format.
///
/// Invariants, as upstream: the value has at most nanounit precision
/// (smaller non-zero values are rounded up, away from zero) and values
/// needing more than 18 digits are capped at `2^63 - 1` units.
#[derive(Debug, Clone)]
pub struct Quantity {
    mantissa: i128,
    scale: i32,
    format: Format,
    /// The input, kept when upstream keeps it (already canonical, or a
    /// spelling upstream preserves such as `1E3`).
    cached: Option<String>,
}

const MAX_INT64_FACTORS: i32 = 18;
const NANO: i32 = -9;

impl Quantity {
    /// Upstream's `ParseQuantity`.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        if s == "0" {
            return Ok(Quantity {
                mantissa: 0,
                scale: 0,
                format: Format::DecimalSI,
                cached: Some(s.to_string()),
            });
        }
        let parts = split_quantity(s)?;
        let (base, exponent, mut format) = interpret_suffix(parts.suffix)?;

        let (num, denom) = (parts.num, parts.denom);
        let mut scale = 0i32;
        let mut multiplier: i64 = 1;
        let precision = match format {
            Format::DecimalExponent | Format::DecimalSI => {
                scale = exponent;
                MAX_INT64_FACTORS - (num.len() + denom.len()) as i32
            }
            Format::BinarySI => {
                if exponent >= 0 && denom.is_empty() && exponent < 63 {
                    multiplier <<= exponent;
                    15 - num.len() as i32 - (exponent as f32 * 3.0 / 10.0) as i32 - 1
                } else {
                    -1
                }
            }
        };
        if precision >= 0 {
            scale -= denom.len() as i32;
            if scale >= NANO {
                let shifted = format!("{num}{denom}");
                let value: i64 = shifted.parse().map_err(|_| QuantityError::Numeric)?;
                if let Some(result) = value.checked_mul(multiplier) {
                    let result = if parts.positive { result } else { -result };
                    let keep = match format {
                        Format::BinarySI => exponent % 10 == 0 && value & 0x07 != 0,
                        _ => {
                            scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
                        }
                    };
                    return Ok(Quantity {
                        mantissa: result as i128,
                        scale,
                        format,
                        cached: keep.then(|| s.to_string()),
                    });
                }
            }
        }

        // Exact arithmetic, then round up to nanounits and cap, as upstream's inf.Dec path.
        let mut digits = BigUint::from_decimal(&format!("{num}{denom}"));
        let mut exp10 = -(denom.len() as i64);
        if base == 10 {
            exp10 += exponent as i64;
        } else {
            for _ in 0..exponent.max(0) {
                digits.mul_small(2);
            }
        }
        let nano = digits.scale_to_nano_ceil(exp10);
        let cap = i64::MAX as u128 * 1_000_000_000;
        let nano = nano.map_or(cap, |n| n.min(cap));
        if format == Format::BinarySI && nano > 0 && nano < 1_000_000_000 {
            format = Format::DecimalSI;
        }
        let mantissa = if parts.positive {
            nano as i128
        } else {
            -(nano as i128)
        };
        Ok(Quantity {
            mantissa,
            scale: NANO,
            format,
            cached: None,
        })
    }

    /// A whole number of units printed in `format` (upstream's `NewQuantity`),
    /// e.g. a byte count as BinarySI: `1228800` prints `1200Ki`.
    pub fn new(value: i128, format: Format) -> Quantity {
        Quantity {
            mantissa: value,
            scale: 0,
            format,
            cached: None,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The value in whole units, rounded up (away from zero) as upstream's `Value()`.
    pub fn value(&self) -> i128 {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded up (away from zero) as upstream's `MilliValue()`.
    pub fn milli_value(&self) -> i128 {
        self.scaled_value(-3)
    }

    /// The value in units of `10^scale`, rounded away from zero; saturates.
    pub fn scaled_value(&self, scale: i32) -> i128 {
        let shift = self.scale - scale;
        if shift >= 0 {
            let mut v = self.mantissa;
            for _ in 0..shift {
                v = v.saturating_mul(10);
            }
            v
        } else {
            let div = 10i128.checked_pow((-shift) as u32);
            let Some(div) = div else {
                return self.mantissa.signum();
            };
            let (q, r) = (self.mantissa / div, self.mantissa % div);
            if r == 0 {
                q
            } else {
                q + self.mantissa.signum()
            }
        }
    }

    /// `(digits, exponent)` with trailing zeros moved into an exponent that
    /// is a multiple of three (upstream's `AsCanonicalBytes`).
    fn canonical_decimal(&self) -> (i128, i32) {
        let (mut m, mut e) = (self.mantissa, self.scale);
        while m.abs() >= 10 && m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        match e.rem_euclid(3) {
            1 => (m.saturating_mul(10), e - 1),
            2 => (m.saturating_mul(100), e - 2),
            _ => (m, e),
        }
    }

    /// The integer value if it has no fractional part.
    fn exact_integer(&self) -> Option<i128> {
        if self.scale >= 0 {
            let mut v = self.mantissa;
            for _ in 0..self.scale {
                v = v.checked_mul(10)?;
            }
            Some(v)
        } else {
            let div = 10i128.checked_pow((-self.scale) as u32)?;
            (self.mantissa % div == 0).then_some(self.mantissa / div)
        }
    }
}

impl fmt::Display for Quantity {
    /// Upstream's canonical form: `1Gi`, `500m`, `1k`, `1e3`; BinarySI
    /// values below 1024 or with a fraction print as DecimalSI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.cached {
            return f.write_str(s);
        }
        if self.is_zero() {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            let small = self.mantissa.abs() < 1024 * 10i128.pow(self.scale.unsigned_abs())
                && self.scale <= 0
                || self.exact_integer().is_some_and(|v| v.abs() < 1024);
            match self.exact_integer() {
                Some(mut v) if !small => {
                    let mut exp = 0;
                    while v.abs() >= 1024 && v % 1024 == 0 {
                        v /= 1024;
                        exp += 1;
                    }
                    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                        .get(exp)
                        .copied()
                        .unwrap_or("");
                    return write!(f, "{v}{suffix}");
                }
                _ => format = Format::DecimalSI,
            }
        }
        let (m, e) = self.canonical_decimal();
        let suffix = match format {
            Format::DecimalExponent if e == 0 => String::new(),
            Format::DecimalExponent => format!("e{e}"),
            _ => match e {
                -9 => "n",
                -6 => "u",
                -3 => "m",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                18 => "E",
                _ => "",
            }
            .to_string(),
        };
        write!(f, "{m}{suffix}")
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl PartialEq for Quantity {
    /// Equal values compare equal whatever their format or spelling.
    fn eq(&self, other: &Self) -> bool {
        let scale = self.scale.min(other.scale);
        self.scaled_value(scale) == other.scaled_value(scale)
    }
}

struct QuantityParts<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Upstream's `parseQuantityString`: sign, number without leading zeros,
/// fraction, suffix letters, optional signed exponent digits.
fn split_quantity(s: &str) -> Result<QuantityParts<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok(QuantityParts {
            positive,
            num: "0",
            denom: "",
            suffix: "",
        });
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let mut num = &s[num_start..pos];
    if pos >= end {
        return Ok(QuantityParts {
            positive,
            num,
            denom: "",
            suffix: "",
        });
    }
    if num.is_empty() {
        num = "0";
    }
    let mut denom = "";
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[start..pos];
        if pos >= end {
            return Ok(QuantityParts {
                positive,
                num,
                denom,
                suffix: "",
            });
        }
    }
    // The documented grammar needs a number before the suffix (`Gi` alone is wrong).
    if !b[..pos].iter().any(|c| c.is_ascii_digit() || *c == b'.') {
        return Err(QuantityError::FormatWrong);
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::FormatWrong);
    }
    Ok(QuantityParts {
        positive,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// Upstream's suffixer: `(base, exponent, format)`.
fn interpret_suffix(suffix: &str) -> Result<(u32, i32, Format), QuantityError> {
    let decimal = |e| Ok((10, e, Format::DecimalSI));
    let binary = |e| Ok((2, e, Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let parsed: i64 = s[1..].parse().map_err(|_| QuantityError::Suffix)?;
            // Upstream converts with int32(parsed), wrapping.
            Ok((10, parsed as i32, Format::DecimalExponent))
        }
        _ => Err(QuantityError::Suffix),
    }
}

/// Just enough arbitrary precision for the slow parse path.
struct BigUint(Vec<u32>);

impl BigUint {
    fn from_decimal(digits: &str) -> Self {
        let mut n = BigUint(Vec::new());
        for d in digits.bytes() {
            n.mul_small(10);
            n.add_small((d - b'0') as u32);
        }
        n
    }

    fn is_zero(&self) -> bool {
        self.0.iter().all(|&l| l == 0)
    }

    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for limb in &mut self.0 {
            let v = *limb as u64 * m as u64 + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn add_small(&mut self, a: u32) {
        let mut carry = a as u64;
        for limb in &mut self.0 {
            if carry == 0 {
                return;
            }
            let v = *limb as u64 + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    /// Divides in place, returning whether the remainder was non-zero.
    fn div_small(&mut self, d: u32) -> bool {
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let v = (rem << 32) | *limb as u64;
            *limb = (v / d as u64) as u32;
            rem = v % d as u64;
        }
        rem != 0
    }

    fn to_u128(&self) -> Option<u128> {
        let mut v: u128 = 0;
        for &limb in self.0.iter().rev() {
            if v >> 96 != 0 {
                return None;
            }
            v = (v << 32) | limb as u128;
        }
        Some(v)
    }

    /// `ceil(self × 10^(exp10 + 9))`, or `None` when it exceeds `u128`.
    fn scale_to_nano_ceil(mut self, exp10: i64) -> Option<u128> {
        if self.is_zero() {
            return Some(0);
        }
        let shift = exp10 + 9;
        if shift >= 0 {
            if shift > 40 {
                return None;
            }
            for _ in 0..shift {
                self.mul_small(10);
            }
            return self.to_u128();
        }
        let mut inexact = false;
        for _ in 0..(-shift).min(400) {
            inexact |= self.div_small(10);
            if self.is_zero() {
                return Some(1);
            }
        }
        let v = self.to_u128()?;
        Some(if inexact { v + 1 } else { v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn new_quantities_print_as_upstreams_new_quantity() {
        let bytes = |v| Quantity::new(v, Format::BinarySI).to_string();
        assert_eq!(bytes(1_228_800), "1200Ki");
        assert_eq!(bytes(20 << 30), "20Gi");
        assert_eq!(bytes(1500), "1500");
        assert_eq!(bytes(512), "512");
        assert_eq!(bytes(0), "0");
        assert_eq!(Quantity::new(32_000, Format::DecimalSI).to_string(), "32k");
    }

    #[test]
    fn canonical_forms_match_upstream() {
        for (input, canonical) in [
            ("0", "0"),
            ("100m", "100m"),
            ("0.5", "500m"),
            ("128Mi", "128Mi"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("1e3", "1e3"),
            ("1000e0", "1e3"),
            ("2k", "2k"),
            ("1000", "1k"),
            ("1.5G", "1500M"),
            ("1000m", "1"),
            ("1.5", "1500m"),
            ("-0.5", "-500m"),
            ("100Ki", "100Ki"),
            ("512", "512"),
            ("0.1Ki", "102400m"),
            ("500Mi", "500Mi"),
            ("0.000000001", "1n"),
            ("0.0000000001", "1n"),
            ("-0.0000000001", "-1n"),
            ("1E3", "1E3"),
            // Upstream keeps the input when its digits are already canonical.
            ("000100m", "000100m"),
            ("12e-3", "12e-3"),
            ("1200e-3", "1200e-3"),
            ("1000e-3", "1"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn values_round_up_as_upstream() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1.5G").value(), 1_500_000_000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("2k").milli_value(), 2_000_000);
        assert_eq!(q("0.5").value(), 1);
        assert_eq!(q("-0.5").value(), -1);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("1.0001m").milli_value(), 2);
    }

    #[test]
    fn huge_values_are_capped_at_int64() {
        assert_eq!(q("100000000000000000000").value(), i64::MAX as i128);
        assert_eq!(q("99999999999999999999999k").value(), i64::MAX as i128);
        assert_eq!(
            q("-1.0000000000000000000001e30").value(),
            -(i64::MAX as i128)
        );
        assert_eq!(
            q("100000000000000000000").to_string(),
            "9223372036854775807"
        );
    }

    #[test]
    fn errors_use_upstream_wording() {
        let wrong = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
        for bad in ["", "abc", "1.2.3", "1Qi", "1 Gi", "Gi", "1Kx"] {
            assert_eq!(
                Quantity::parse(bad).unwrap_err().to_string(),
                wrong,
                "{bad:?}"
            );
        }
        for bad in ["1KK", "1e", "1iK", "1mi"] {
            assert_eq!(
                Quantity::parse(bad).unwrap_err().to_string(),
                "unable to parse quantity's suffix",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1k"), q("1e3"));
        assert_ne!(q("1k"), q("1Ki"));
    }

    proptest! {
        #[test]
        fn canonical_form_reparses_to_the_same_value(n in 0i64..10_000_000, suffix in prop::sample::select(vec!["", "m", "k", "M", "Ki", "Mi", "Gi", "n", "u"])) {
            let a = q(&format!("{n}{suffix}"));
            let b = q(&a.to_string());
            prop_assert_eq!(a.milli_value(), b.milli_value());
            prop_assert_eq!(b.to_string(), a.to_string());
        }

        #[test]
        fn milli_value_of_milli_input_is_exact(n in -1_000_000_000i64..1_000_000_000) {
            prop_assert_eq!(q(&format!("{n}m")).milli_value(), n as i128);
        }

        #[test]
        fn parser_never_panics(s in "[-+0-9.eEinumkKMGTP]{0,12}") {
            let _ = Quantity::parse(&s);
        }
    }
}
