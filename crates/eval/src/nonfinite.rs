//! Serde for `f64` values that may be non-finite. JSON has no NaN or infinity (serde_json writes
//! them as `null`, which then does not read back as a number), so they are written as the strings
//! `"NaN"`, `"inf"` and `"-inf"` and read back from those (or from `null`, as NaN). Use with
//! `#[serde(with = "rlvr_eval::nonfinite::value")]` or `"...::nonfinite::vec"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Number(f64),
    Text(String),
    Null(()),
}

fn to_repr(x: f64) -> Repr {
    if x.is_finite() {
        Repr::Number(x)
    } else if x.is_nan() {
        Repr::Text("NaN".into())
    } else if x > 0.0 {
        Repr::Text("inf".into())
    } else {
        Repr::Text("-inf".into())
    }
}

fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
    match r {
        Repr::Number(x) => Ok(x),
        Repr::Null(()) => Ok(f64::NAN),
        Repr::Text(t) => match t.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "inf" | "Infinity" => Ok(f64::INFINITY),
            "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
            other => Err(E::custom(format!(
                "expected a number, \"NaN\", \"inf\" or \"-inf\", got {other:?}"
            ))),
        },
    }
}

/// One `f64`.
pub mod value {
    use super::*;

    /// Writes a number, or "NaN" / "inf" / "-inf".
    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        to_repr(*x).serialize(s)
    }

    /// Reads a number, "NaN" / "inf" / "-inf", or null (NaN).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(d)?)
    }
}

/// A `Vec<f64>`.
pub mod vec {
    use super::*;

    /// Writes each value as [`value::serialize`](super::value::serialize) does.
    pub fn serialize<S: Serializer>(xs: &[f64], s: S) -> Result<S::Ok, S::Error> {
        xs.iter()
            .map(|x| to_repr(*x))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    /// Reads each value as [`value::deserialize`](super::value::deserialize) does.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Repr>::deserialize(d)?
            .into_iter()
            .map(from_repr)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    struct T {
        #[serde(with = "super::value")]
        x: f64,
        #[serde(with = "super::vec")]
        v: Vec<f64>,
    }

    #[test]
    fn non_finite_values_round_trip_through_json() {
        let t = T {
            x: f64::NAN,
            v: vec![1.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.25],
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"x":"NaN","v":[1.5,"inf","-inf","NaN",-0.25]}"#);
        let back: T = serde_json::from_str(&json).unwrap();
        assert!(back.x.is_nan());
        assert_eq!(back.v[0], 1.5);
        assert_eq!(back.v[1], f64::INFINITY);
        assert_eq!(back.v[2], f64::NEG_INFINITY);
        assert!(back.v[3].is_nan());
        let old: T = serde_json::from_str(r#"{"x":null,"v":[null,2]}"#).unwrap();
        assert!(old.x.is_nan() && old.v[0].is_nan() && old.v[1] == 2.0);
        assert!(serde_json::from_str::<T>(r#"{"x":"many","v":[]}"#).is_err());
    }
}
