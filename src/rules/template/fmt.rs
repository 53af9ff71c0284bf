//! Go's `fmt` as templates use it: `%v` of floats (`1e+06`), `%.4g`, and `Sprint`,
//! `Sprintln`, `Sprintf` with flags, width, precision and Go's error markers
//! (`%!d(float64=1.5)`, `%!s(MISSING)`, `%!(EXTRA ...)`).

use super::value::Value;

/// Digits of precision `printf` gives at most; more is taken as this many (Rust's
/// formatter panics past 65 535, and no annotation needs a hundred digits).
const MAX_PRECISION: usize = 100;
/// The widest field `printf` pads to.
const MAX_WIDTH: usize = 1000;

/// Go's `%v` of a float64, as `strconv.FormatFloat(v, 'g', -1, 64)`: shortest digits,
/// exponent form when the decimal exponent is below -4 or at least 6 (`1e+06`).
pub fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("e in {:e}");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..6).contains(&exp) {
        return go_exponent(mantissa, exp);
    }
    format!("{v}")
}

fn go_exponent(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Go's `%.{prec}g`.
pub fn format_g(v: f64, prec: usize) -> String {
    if !v.is_finite() || v == 0.0 {
        return format_go_float(v);
    }
    let prec = prec.clamp(1, MAX_PRECISION);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').expect("e");
    let exp: i32 = exp.parse().expect("exponent");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        go_exponent(&trim(mantissa), exp)
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// Go's `%.{prec}e`.
fn format_e(v: f64, prec: usize) -> String {
    let sci = format!("{:.*e}", prec, v);
    let (mantissa, exp) = sci.split_once('e').expect("e");
    go_exponent(mantissa, exp.parse().expect("exponent"))
}

/// `fmt.Sprint` (`newline`: `fmt.Sprintln`).
pub fn sprint(args: &[Value], newline: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && (newline || (!is_str(a) && !is_str(&args[i - 1]))) {
            out.push(' ');
        }
        out.push_str(&a.print());
    }
    if newline {
        out.push('\n');
    }
    out
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// `fmt.Sprintf`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let mut number = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Option<usize> {
            if chars.peek() == Some(&'*') {
                chars.next();
                let n = match args.get(next) {
                    Some(Value::Int(n)) => Some((*n).unsigned_abs() as usize),
                    _ => None,
                };
                next += 1;
                return n;
            }
            let mut digits = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(d);
                chars.next();
            }
            digits.parse::<usize>().ok()
        };
        spec.width = number(&mut chars).map(|w| w.min(MAX_WIDTH));
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(number(&mut chars).unwrap_or(0).min(MAX_PRECISION));
        }
        if chars.peek() == Some(&'[') {
            let index: String = chars.by_ref().skip(1).take_while(|c| *c != ']').collect();
            if let Ok(i) = index.parse::<usize>() {
                next = i.saturating_sub(1);
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            None => out.push_str(&format!("%!{verb}(MISSING)")),
            Some(arg) => out.push_str(&format_one(verb, &spec, arg)),
        }
        next += 1;
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.print()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn bad_verb(verb: char, arg: &Value) -> String {
    match arg {
        Value::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", arg.type_name(), arg.print()),
    }
}

fn format_one(verb: char, spec: &Spec, arg: &Value) -> String {
    let signed = |body: String, negative: bool| -> (String, String) {
        let sign = if negative {
            "-"
        } else if spec.plus {
            "+"
        } else if spec.space {
            " "
        } else {
            ""
        };
        (sign.to_string(), body)
    };
    let (sign, body, numeric) = match (verb, arg) {
        ('v', Value::Float(f)) | ('g', Value::Float(f)) | ('G', Value::Float(f)) => {
            let s = match spec.precision {
                Some(p) if verb != 'v' => format_g(f.abs(), p.max(1)),
                _ => format_go_float(f.abs()),
            };
            let s = if verb == 'G' { s.to_uppercase() } else { s };
            let (a, b) = signed(s, f.is_sign_negative() && !f.is_nan());
            (a, b, true)
        }
        ('f' | 'F', Value::Float(f)) => {
            let s = if f.is_finite() {
                format!("{:.*}", spec.precision.unwrap_or(6), f.abs())
            } else {
                format_go_float(f.abs()).trim_start_matches('+').to_string()
            };
            let (a, b) = signed(s, f.is_sign_negative() && !f.is_nan());
            let a = if f.is_infinite() && a.is_empty() {
                "+".to_string()
            } else {
                a
            };
            (a, b, f.is_finite())
        }
        ('e' | 'E', Value::Float(f)) => {
            let s = if f.is_finite() {
                format_e(f.abs(), spec.precision.unwrap_or(6))
            } else {
                format_go_float(f.abs())
            };
            let s = if verb == 'E' { s.to_uppercase() } else { s };
            let (a, b) = signed(s, f.is_sign_negative() && !f.is_nan());
            (a, b, true)
        }
        ('d' | 'v', Value::Int(i)) => {
            let (a, b) = signed(i.unsigned_abs().to_string(), *i < 0);
            (a, b, true)
        }
        ('x' | 'X' | 'o' | 'b', Value::Int(i)) => {
            let n = i.unsigned_abs();
            let (digits, prefix) = match verb {
                'x' => (format!("{n:x}"), "0x"),
                'X' => (format!("{n:X}"), "0X"),
                'o' => (format!("{n:o}"), "0"),
                _ => (format!("{n:b}"), "0b"),
            };
            let digits = if spec.sharp {
                format!("{prefix}{digits}")
            } else {
                digits
            };
            let (a, b) = signed(digits, *i < 0);
            (a, b, true)
        }
        ('c', Value::Int(i)) => (
            String::new(),
            char::from_u32(*i as u32).unwrap_or('\u{FFFD}').to_string(),
            false,
        ),
        ('q', Value::Int(i)) => (
            String::new(),
            format!("{:?}", char::from_u32(*i as u32).unwrap_or('\u{FFFD}')),
            false,
        ),
        ('s' | 'v', Value::Str(s)) => {
            let s = match spec.precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            (String::new(), s, false)
        }
        ('q', Value::Str(s)) => (String::new(), go_quote(s), false),
        ('x' | 'X', Value::Str(s)) => {
            let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
            let hex = if verb == 'X' { hex.to_uppercase() } else { hex };
            (String::new(), hex, false)
        }
        ('t' | 'v', Value::Bool(b)) => (String::new(), b.to_string(), false),
        ('v' | 's', Value::Map(_) | Value::List(_) | Value::Record(_)) => {
            (String::new(), arg.print(), false)
        }
        ('v', Value::Nil) => (String::new(), "<nil>".to_string(), false),
        _ => return bad_verb(verb, arg),
    };
    pad(sign, body, spec, numeric)
}

fn pad(sign: String, body: String, spec: &Spec, numeric: bool) -> String {
    let len = sign.chars().count() + body.chars().count();
    let Some(width) = spec.width.filter(|w| *w > len) else {
        return sign + &body;
    };
    let fill = width - len;
    if spec.minus {
        format!("{sign}{body}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        format!("{sign}{}{body}", "0".repeat(fill))
    } else {
        format!("{}{sign}{body}", " ".repeat(fill))
    }
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fmt: &str, args: &[Value]) -> String {
        sprintf(fmt, args)
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(format_go_float(1.0), "1");
        assert_eq!(format_go_float(0.1), "0.1");
        assert_eq!(format_go_float(123456.0), "123456");
        assert_eq!(format_go_float(1234567.0), "1.234567e+06");
        assert_eq!(format_go_float(1500000.0), "1.5e+06");
        assert_eq!(format_go_float(1e-5), "1e-05");
        assert_eq!(format_go_float(1e21), "1e+21");
        assert_eq!(format_g(1234.5678, 4), "1235");
        assert_eq!(format_g(0.000012345, 3), "1.23e-05");
    }

    #[test]
    fn sprintf_follows_go() {
        let x = Value::Float(2.61803);
        let one = std::slice::from_ref(&x);
        assert_eq!(f("%.2f", one), "2.62");
        assert_eq!(
            f("%6.1f|%-6.1f|%06.1f", &[x.clone(), x.clone(), x.clone()]),
            "   2.6|2.6   |0002.6"
        );
        assert_eq!(
            f("%v %g %e", &[x.clone(), x.clone(), x.clone()]),
            "2.61803 2.61803 2.618030e+00"
        );
        assert_eq!(f("%d%%", &[Value::Int(42)]), "42%");
        assert_eq!(f("%d", one), "%!d(float64=2.61803)");
        assert_eq!(f("%s", one), "%!s(float64=2.61803)");
        assert_eq!(
            f("%s and %s", &[Value::Str("a".into())]),
            "a and %!s(MISSING)"
        );
        assert_eq!(
            f("%s", &[Value::Str("a".into()), Value::Int(1)]),
            "a%!(EXTRA int=1)"
        );
        assert_eq!(f("%q", &[Value::Str("a\"b".into())]), "\"a\\\"b\"");
        assert_eq!(f("%+.1f", &[Value::Float(2.0)]), "+2.0");
        assert_eq!(
            f(
                "%5s|%-5s|",
                &[Value::Str("ab".into()), Value::Str("cd".into())]
            ),
            "   ab|cd   |"
        );
        assert_eq!(f("%x", &[Value::Int(255)]), "ff");
        assert_eq!(f("%.0f", &[Value::Float(2.5)]), "2");
    }

    #[test]
    fn a_huge_precision_is_capped_instead_of_panicking() {
        // Found by the rule_file fuzz target: `{:.*}` panics past 65 535 digits.
        for verb in ["f", "g", "e"] {
            let out = f(&format!("%.99999999{verb}"), &[Value::Float(0.5)]);
            assert!(out.len() <= MAX_PRECISION + 8, "{}", out.len());
        }
        assert_eq!(f("%.101f", &[Value::Float(0.25)]).len(), 2 + MAX_PRECISION);
    }

    #[test]
    fn sprint_spaces_operands_as_go_does() {
        let args = [
            Value::Int(1),
            Value::Int(2),
            Value::Str("x".into()),
            Value::Int(3),
        ];
        assert_eq!(sprint(&args, false), "1 2x3");
        assert_eq!(sprint(&args, true), "1 2 x 3\n");
    }
}
