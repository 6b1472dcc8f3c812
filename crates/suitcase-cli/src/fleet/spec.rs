//! `fleet campaign create`'s flags as the typed request (`POST /api/v1/campaigns` and
//! `/dry-run`).

use anyhow::{Result, anyhow, bail};
use suitcase_protocol::{CampaignCreate, Filter, OnError, Window};

use super::CampaignSpec;

/// The campaign the flags describe.
pub(super) fn campaign(s: &CampaignSpec) -> Result<CampaignCreate> {
    let waves = crate::waves::parse(s.waves.iter().map(String::as_str))?;
    let window = match &s.window {
        None => None,
        Some(w) => {
            let (a, b) = w
                .split_once('-')
                .ok_or_else(|| anyhow!("--window is HH:MM-HH:MM (UTC)"))?;
            Some(Window {
                start_minute: minutes(a)?,
                end_minute: minutes(b)?,
                days: Vec::new(),
            })
        }
    };
    let on_error = match s.on_error.as_str() {
        "pause" => OnError::Pause,
        "abort" => OnError::Abort,
        "rollback" => OnError::Rollback,
        other => bail!("--on-error {other}: use pause, abort or rollback"),
    };
    Ok(CampaignCreate {
        name: s.name.clone().unwrap_or_else(|| s.release.clone()),
        release_id: s.release.clone(),
        filter: Filter {
            tags_all: s.tags.clone(),
            group: s.group.clone(),
            devices: s.devices.clone(),
            ..Filter::default()
        },
        waves,
        success_threshold: s.success,
        error_threshold: s.error,
        on_error,
        rollback_release_id: s.rollback_release.clone(),
        rate_per_minute: s.rate,
        window,
        requires_consent: s.consent,
    })
}

/// `HH:MM` as minutes after midnight.
fn minutes(hhmm: &str) -> Result<u32> {
    let (h, m) = hhmm
        .trim()
        .split_once(':')
        .ok_or_else(|| anyhow!("{hhmm:?}: use HH:MM"))?;
    let (h, m): (u32, u32) = (h.parse()?, m.parse()?);
    if h > 23 || m > 59 {
        bail!("{hhmm:?} is not a time of day");
    }
    Ok(h * 60 + m)
}
