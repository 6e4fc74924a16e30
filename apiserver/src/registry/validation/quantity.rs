//! Just enough of upstream's `resource.Quantity` to compare requests with
//! limits and sum them for the QoS class. Entry point: [`parse`].

/// Upstream's message for a string that is not a quantity.
pub(in crate::registry) const QUANTITY_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// The value of a quantity (`500m`, `1Gi`, `2`, `1e3`) in billionths, the
/// finest scale upstream keeps; anything finer rounds up, as upstream does.
pub(in crate::registry) fn parse(s: &str) -> Result<i128, &'static str> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(QUANTITY_ERROR);
    }
    if int.len() > 20 {
        return Err(QUANTITY_ERROR);
    }
    // The mantissa as an integer over 10^frac.len().
    let mut mantissa: i128 = 0;
    for b in int.bytes().chain(frac.bytes().take(30)) {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    let scale = frac.len().min(30) as i32;
    let (binary, decimal): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| QUANTITY_ERROR)?;
            if !(-30..=30).contains(&e) {
                return Err(QUANTITY_ERROR);
            }
            (0, e)
        }
        _ => return Err(QUANTITY_ERROR),
    };
    // value = mantissa * 2^binary * 10^(decimal - scale), in units of 1e-9.
    let value = mantissa
        .checked_mul(1i128 << binary)
        .ok_or(QUANTITY_ERROR)?;
    let exp10 = decimal - scale + 9;
    let nanos = if exp10 >= 0 {
        value
            .checked_mul(10i128.checked_pow(exp10 as u32).ok_or(QUANTITY_ERROR)?)
            .ok_or(QUANTITY_ERROR)?
    } else {
        let div = 10i128.checked_pow((-exp10) as u32).ok_or(QUANTITY_ERROR)?;
        (value + div - 1) / div
    };
    Ok(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NANO: i128 = 1_000_000_000;

    #[test]
    fn parses_the_suffixes_users_write() {
        assert_eq!(parse("1"), Ok(NANO));
        assert_eq!(parse("500m"), Ok(NANO / 2));
        assert_eq!(parse("0.5"), Ok(NANO / 2));
        assert_eq!(parse("1Ki"), Ok(1024 * NANO));
        assert_eq!(parse("1Gi"), parse("1024Mi"));
        assert_eq!(parse("1k"), parse("1e3"));
        assert_eq!(parse("1M"), Ok(1_000_000 * NANO));
        assert_eq!(parse("-2"), Ok(-2 * NANO));
        assert_eq!(parse("1n"), Ok(1));
        assert_eq!(parse("1Ei"), Ok((1i128 << 60) * NANO));
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in ["", "abc", "1 Gi", "1GB", "1.2.3", "m", "1e"] {
            assert_eq!(parse(bad), Err(QUANTITY_ERROR), "{bad}");
        }
    }
}
