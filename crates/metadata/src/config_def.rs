//! Typed config values the way Kafka's `ConfigDef` parses, checks and prints them.
//!
//! Shared by the topic config table ([`crate::topic_config`]) and the broker's static
//! config, so both report the same messages for the same mistakes:
//! `Invalid value {value} for configuration {name}: {reason}`.

/// Kafka's config value types (`ConfigDef.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The lower-case name Kafka's docs use (`int`, `long`, `list`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "boolean",
            ConfigType::String => "string",
            ConfigType::Int => "int",
            ConfigType::Short => "short",
            ConfigType::Long => "long",
            ConfigType::Double => "double",
            ConfigType::List => "list",
            ConfigType::Class => "class",
            ConfigType::Password => "password",
        }
    }

    /// The `ConfigType` id of DescribeConfigs responses (v3+).
    pub fn describe_configs_id(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    /// Whether values of this type are hidden from DescribeConfigs.
    pub fn is_sensitive(self) -> bool {
        self == ConfigType::Password
    }
}

/// A range or set a parsed value must fall in (Kafka's `ConfigDef.Validator`s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    /// Anything the type parses.
    Any,
    /// An integer `>= min` (`Range.atLeast`).
    AtLeast(i64),
    /// An integer in `min..=max` (`Range.between`).
    Between(i64, i64),
    /// A double in `min..=max` (`Range.between` on a double); NaN is rejected.
    DoubleBetween(f64, f64),
    /// A string equal to one of these (`ValidString.in`, case-sensitive).
    OneOf(&'static [&'static str]),
    /// A list whose every element is one of these (`ValidList.in`); the empty list is valid.
    ListOf(&'static [&'static str]),
    /// `min..=max`, or exactly `or` (the gzip level: 1..=9 or -1).
    BetweenOr { min: i64, max: i64, or: i64 },
    /// `*`, or a list of `partitionId:brokerId` (Kafka's `ThrottledReplicaListValidator`).
    ThrottledReplicas,
    /// A non-empty string (after trimming).
    NonEmpty,
}

/// A parsed config value.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    Bool(bool),
    /// Int, short and long values.
    Long(i64),
    Double(f64),
    /// String, class and password values (trimmed).
    Str(String),
    List(Vec<String>),
}

impl ConfigValue {
    /// The value as Kafka prints it (`ConfigDef.convertToString`): lists joined with `,`,
    /// doubles like Java's `Double.toString` (`0.5`, `1.0`, `1.0E-4`).
    pub fn render(&self) -> String {
        match self {
            ConfigValue::Bool(b) => b.to_string(),
            ConfigValue::Long(n) => n.to_string(),
            ConfigValue::Double(d) => render_java_double(*d),
            ConfigValue::Str(s) => s.clone(),
            ConfigValue::List(items) => items.join(","),
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ConfigValue::Long(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ConfigValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ConfigValue::Double(d) => Some(*d),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            ConfigValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[String]> {
        match self {
            ConfigValue::List(items) => Some(items),
            _ => None,
        }
    }
}

/// Kafka's message for a bad value: `Invalid value {value} for configuration {name}: {reason}`.
pub fn invalid_value_message(name: &str, value: &str, reason: &str) -> String {
    format!("Invalid value {value} for configuration {name}: {reason}")
}

/// Parses `raw` as `ty` and checks it with `validator`; the error is the reason only
/// (wrap it with [`invalid_value_message`]). Surrounding whitespace is ignored, as in Kafka.
pub fn parse_value(ty: ConfigType, validator: Validator, raw: &str) -> Result<ConfigValue, String> {
    let value = parse_type(ty, raw)?;
    check(validator, &value)?;
    Ok(value)
}

/// Parses `raw` as `ty` only (`ConfigDef.parseType`).
pub fn parse_type(ty: ConfigType, raw: &str) -> Result<ConfigValue, String> {
    let trimmed = raw.trim();
    let not_a_number = |kind: &str| format!("Not a number of type {kind}");
    match ty {
        ConfigType::Boolean => {
            if trimmed.eq_ignore_ascii_case("true") {
                Ok(ConfigValue::Bool(true))
            } else if trimmed.eq_ignore_ascii_case("false") {
                Ok(ConfigValue::Bool(false))
            } else {
                Err("Expected value to be either true or false".into())
            }
        }
        ConfigType::Int => trimmed
            .parse::<i32>()
            .map(|n| ConfigValue::Long(n.into()))
            .map_err(|_| not_a_number("INT")),
        ConfigType::Short => trimmed
            .parse::<i16>()
            .map(|n| ConfigValue::Long(n.into()))
            .map_err(|_| not_a_number("SHORT")),
        ConfigType::Long => trimmed
            .parse::<i64>()
            .map(ConfigValue::Long)
            .map_err(|_| not_a_number("LONG")),
        ConfigType::Double => trimmed
            .parse::<f64>()
            .map(ConfigValue::Double)
            .map_err(|_| not_a_number("DOUBLE")),
        ConfigType::String | ConfigType::Class | ConfigType::Password => {
            Ok(ConfigValue::Str(trimmed.to_owned()))
        }
        ConfigType::List => {
            if trimmed.is_empty() {
                Ok(ConfigValue::List(Vec::new()))
            } else {
                // Kafka splits on `\s*,\s*` and keeps empty elements.
                Ok(ConfigValue::List(
                    trimmed.split(',').map(|s| s.trim().to_owned()).collect(),
                ))
            }
        }
    }
}

/// Checks a parsed value against a validator; the error is Kafka's reason text.
pub fn check(validator: Validator, value: &ConfigValue) -> Result<(), String> {
    match (validator, value) {
        (Validator::Any, _) => Ok(()),
        (Validator::AtLeast(min), ConfigValue::Long(n)) => {
            if *n < min {
                Err(format!("Value must be at least {min}"))
            } else {
                Ok(())
            }
        }
        (Validator::Between(min, max), ConfigValue::Long(n)) => {
            if *n < min {
                Err(format!("Value must be at least {min}"))
            } else if *n > max {
                Err(format!("Value must be no more than {max}"))
            } else {
                Ok(())
            }
        }
        (Validator::DoubleBetween(min, max), ConfigValue::Double(d)) => {
            if d.is_nan() {
                Err("Value must be a number".into())
            } else if *d < min {
                Err(format!(
                    "Value must be at least {}",
                    render_java_double(min)
                ))
            } else if *d > max {
                Err(format!(
                    "Value must be no more than {}",
                    render_java_double(max)
                ))
            } else {
                Ok(())
            }
        }
        (Validator::OneOf(valid), ConfigValue::Str(s)) => {
            if valid.contains(&s.as_str()) {
                Ok(())
            } else {
                Err(format!("String must be one of: {}", valid.join(", ")))
            }
        }
        (Validator::ListOf(valid), ConfigValue::List(items)) => {
            match items.iter().find(|item| !valid.contains(&item.as_str())) {
                None => Ok(()),
                Some(_) => Err(format!("String must be one of: {}", valid.join(", "))),
            }
        }
        (Validator::BetweenOr { min, max, or }, ConfigValue::Long(n)) => {
            if *n == or || (min..=max).contains(n) {
                Ok(())
            } else {
                Err(format!(
                    "Value must be between {min} and {max} or equal to {or}"
                ))
            }
        }
        (Validator::ThrottledReplicas, ConfigValue::List(items)) => {
            let is_pair = |s: &str| match s.split_once(':') {
                Some((p, b)) => {
                    !p.is_empty()
                        && !b.is_empty()
                        && p.bytes().all(|c| c.is_ascii_digit())
                        && b.bytes().all(|c| c.is_ascii_digit())
                }
                None => s.is_empty(),
            };
            if items.concat().trim() == "*" || items.iter().all(|s| is_pair(s)) {
                Ok(())
            } else {
                Err(
                    "must be the literal '*' or a list of replicas in the following format: \
                     [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                        .into(),
                )
            }
        }
        (Validator::NonEmpty, ConfigValue::Str(s)) => {
            if s.is_empty() {
                Err("String may not be empty".into())
            } else {
                Ok(())
            }
        }
        // A validator paired with a type it does not apply to: a table bug, not user input.
        (v, other) => Err(format!("validator {v:?} does not apply to value {other:?}")),
    }
}

/// Formats a double the way Java's `Double.toString` does for the values configs use.
pub fn render_java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let abs = d.abs();
    if (1e-3..1e7).contains(&abs) {
        let s = format!("{d}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{d:E}");
        let (mantissa, exponent) = s.split_once('E').unwrap_or((s.as_str(), "0"));
        if mantissa.contains('.') {
            format!("{mantissa}E{exponent}")
        } else {
            format!("{mantissa}.0E{exponent}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_values_of_each_type_when_parsed_should_match_kafka() {
        use ConfigType::*;
        let ok: &[(ConfigType, &str, &str)] = &[
            (Boolean, " TRUE ", "true"),
            (Boolean, "false", "false"),
            (Int, " 42 ", "42"),
            (Int, "+7", "7"),
            (Short, "-3", "-3"),
            (Long, "9223372036854775807", "9223372036854775807"),
            (Double, "1", "1.0"),
            (Double, "0.5", "0.5"),
            (Double, "0.0001", "1.0E-4"),
            (String, "  x  ", "x"),
            (List, "delete, compact", "delete,compact"),
            (List, "  ", ""),
        ];
        for (ty, raw, rendered) in ok {
            assert_eq!(
                parse_type(*ty, raw).unwrap().render(),
                *rendered,
                "{ty:?} {raw:?}"
            );
        }
        let bad: &[(ConfigType, &str, &str)] = &[
            (Boolean, "yes", "Expected value to be either true or false"),
            (Int, "2147483648", "Not a number of type INT"),
            (Short, "40000", "Not a number of type SHORT"),
            (Long, "1k", "Not a number of type LONG"),
            (Double, "half", "Not a number of type DOUBLE"),
        ];
        for (ty, raw, reason) in bad {
            assert_eq!(parse_type(*ty, raw).unwrap_err(), *reason, "{ty:?} {raw:?}");
        }
    }

    #[test]
    fn given_validators_when_checked_should_give_kafka_reasons() {
        let long = ConfigValue::Long;
        let list =
            |items: &[&str]| ConfigValue::List(items.iter().map(|s| s.to_string()).collect());
        let cases: Vec<(Validator, ConfigValue, Result<(), &str>)> = vec![
            (Validator::AtLeast(1), long(1), Ok(())),
            (Validator::AtLeast(1), long(0), Err("Value must be at least 1")),
            (Validator::Between(1, 17), long(18), Err("Value must be no more than 17")),
            (
                Validator::BetweenOr { min: 1, max: 9, or: -1 },
                long(-1),
                Ok(()),
            ),
            (
                Validator::BetweenOr { min: 1, max: 9, or: -1 },
                long(0),
                Err("Value must be between 1 and 9 or equal to -1"),
            ),
            (Validator::DoubleBetween(0.0, 1.0), ConfigValue::Double(1.5), Err("Value must be no more than 1.0")),
            (Validator::DoubleBetween(0.0, 1.0), ConfigValue::Double(f64::NAN), Err("Value must be a number")),
            (Validator::OneOf(&["a", "b"]), ConfigValue::Str("c".into()), Err("String must be one of: a, b")),
            (Validator::ListOf(&["compact", "delete"]), list(&["delete", ""]), Err("String must be one of: compact, delete")),
            (Validator::ListOf(&["compact", "delete"]), list(&[]), Ok(())),
            (Validator::ThrottledReplicas, list(&["*"]), Ok(())),
            (Validator::ThrottledReplicas, list(&["0:1", "1:2"]), Ok(())),
            (Validator::ThrottledReplicas, list(&[]), Ok(())),
            (
                Validator::ThrottledReplicas,
                list(&["0-1"]),
                Err("must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
            ),
            (Validator::NonEmpty, ConfigValue::Str(String::new()), Err("String may not be empty")),
        ];
        for (validator, value, expected) in cases {
            assert_eq!(
                check(validator, &value),
                expected.map_err(str::to_owned),
                "{validator:?} {value:?}"
            );
        }
    }

    #[test]
    fn given_doubles_when_rendered_should_look_like_java() {
        for (d, s) in [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (1e-5, "1.0E-5"),
            (1.5e7, "1.5E7"),
            (123.25, "123.25"),
        ] {
            assert_eq!(render_java_double(d), s);
        }
    }
}
