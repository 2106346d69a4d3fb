//! The `[verify]` table: when the daemon re-reads a slice of the stored files.
//!
//! On by default, a 3% slice every night at 04:30: bit rot on a USB disk is silent until a
//! restore needs the file, so a check nobody has to remember is worth a little nightly
//! reading. 3% of the store (at idle I/O priority) goes round all of it in about a month;
//! `schedule = "off"` turns it off.

use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use crate::error::Result;
use crate::schedule::CronSpec;
use crate::verify::Sample;

pub const DEFAULT_SCHEDULE: &str = "30 4 * * *";
pub const DEFAULT_SAMPLE: Sample = Sample(3.0);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    pub schedule: Option<Spanned<String>>,
    pub sample: Option<Spanned<String>>,
}

/// The checked `[verify]` table.
#[derive(Clone, Debug)]
pub struct Verify {
    /// None: the daemon never verifies (`schedule = "off"`).
    pub schedule: Option<CronSpec>,
    pub sample: Sample,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            schedule: Some(CronSpec::parse(DEFAULT_SCHEDULE).expect("valid default")),
            sample: DEFAULT_SAMPLE,
        }
    }
}

impl Validator<'_> {
    pub(super) fn verify(&self, raw: Option<Spanned<RawVerify>>) -> Result<Verify> {
        let mut v = Verify::default();
        let Some(raw) = raw else { return Ok(v) };
        let raw = raw.into_inner();
        if let Some(s) = &raw.schedule {
            v.schedule = match s.get_ref().trim() {
                "off" | "never" => None,
                text => Some(
                    CronSpec::parse(text).or_else(|m| self.err(s.span(), "verify.schedule", m))?,
                ),
            };
        }
        if let Some(s) = &raw.sample {
            v.sample =
                Sample::parse(s.get_ref()).or_else(|m| self.err(s.span(), "verify.sample", m))?;
        }
        Ok(v)
    }
}
