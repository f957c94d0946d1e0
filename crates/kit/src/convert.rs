//! Protobuf well-known types ⇄ domain values, the same in every service.
use chrono::{DateTime, Utc};

/// A protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf timestamp as a time, rounded down to microseconds (the storage
/// precision, so a value written reads back equal); `None` when it is not a
/// valid timestamp.
pub fn from_ts(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    DateTime::from_timestamp(t.seconds, (t.nanos / 1000 * 1000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_microseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        assert_eq!(from_ts(&ts(t)), Some(t));
        let finer = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        };
        assert_eq!(from_ts(&finer), Some(t));
        for nanos in [-1, 1_000_000_000] {
            let bad = prost_types::Timestamp { seconds: 0, nanos };
            assert_eq!(from_ts(&bad), None);
        }
    }
}
