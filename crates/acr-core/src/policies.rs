//! `properties.policies` of a registry (2025-11-01 `Policies`): the five policies ACR returns,
//! typed, with the merge of a PUT/PATCH body into the stored ones and its validation.
//!
//! Only the retention policy has an effect (the service's retention sweep deletes untagged
//! manifests older than `days`); the others are kept and returned as set, so that clients
//! which write the whole object back (`az acr config retention update` sends every policy it
//! read) round-trip it unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;

/// The range of `retentionPolicy.days` ACR accepts (`az acr config retention update --days`:
/// "Range: 0 to 365"); the spec's default is 7.
pub const RETENTION_DAYS: std::ops::RangeInclusive<i64> = 0..=365;
pub const RETENTION_DAYS_DEFAULT: i32 = 7;

/// `properties.policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Policies {
    pub quarantine_policy: StatusPolicy,
    pub trust_policy: TrustPolicy,
    pub retention_policy: RetentionPolicy,
    pub export_policy: StatusPolicy,
    #[serde(rename = "azureADAuthenticationAsArmPolicy")]
    pub azure_ad_authentication_as_arm_policy: StatusPolicy,
}

impl Default for Policies {
    /// What ACR gives a new registry.
    fn default() -> Self {
        Self {
            quarantine_policy: StatusPolicy::disabled(),
            trust_policy: TrustPolicy::default(),
            retention_policy: RetentionPolicy::default(),
            export_policy: StatusPolicy::enabled(),
            azure_ad_authentication_as_arm_policy: StatusPolicy::enabled(),
        }
    }
}

/// A policy that is only `enabled` or `disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusPolicy {
    /// `enabled` or `disabled`.
    pub status: String,
}

impl StatusPolicy {
    fn enabled() -> Self {
        Self {
            status: ENABLED.into(),
        }
    }
    fn disabled() -> Self {
        Self {
            status: DISABLED.into(),
        }
    }
}

/// `trustPolicy` (content trust).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrustPolicy {
    /// Always `Notary`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `enabled` or `disabled`.
    pub status: String,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        Self {
            type_: "Notary".into(),
            status: DISABLED.into(),
        }
    }
}

/// `retentionPolicy`: untagged manifests older than `days` are deleted while `enabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// Days an untagged manifest is kept (0–365).
    pub days: i32,
    /// `enabled` or `disabled`.
    pub status: String,
    /// When `days` or `status` last changed (set by the service; ignored in requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time: Option<DateTime<Utc>>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            days: RETENTION_DAYS_DEFAULT,
            status: DISABLED.into(),
            last_updated_time: None,
        }
    }
}

impl RetentionPolicy {
    pub fn enabled(&self) -> bool {
        self.status == ENABLED
    }
}

const ENABLED: &str = "enabled";
const DISABLED: &str = "disabled";
const STATUSES: &[&str] = &[ENABLED, DISABLED];

/// A refused `policies` value: the ARM error code and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInvalid {
    /// `InvalidRequestContent` (wrong JSON type) or `InvalidParameter` (a value out of range).
    pub code: &'static str,
    pub invalid: Invalid,
}

fn wrong_type(field: &str, what: &str) -> PolicyInvalid {
    PolicyInvalid {
        code: "InvalidRequestContent",
        invalid: Invalid::new(field, format!("'{field}' must be {what}.")),
    }
}

fn out_of_range(field: &str, message: String) -> PolicyInvalid {
    PolicyInvalid {
        code: "InvalidParameter",
        invalid: Invalid::new(field, message),
    }
}

/// `body` (the request's `properties.policies`) merged into `current`: a policy or field left
/// out keeps its value; `null` counts as left out; read-only and unknown fields are ignored.
/// The retention policy's `lastUpdatedTime` becomes `now` when it changes, or when it was
/// never set.
pub fn merge(
    current: &Policies,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Policies, PolicyInvalid> {
    const BASE: &str = "properties.policies";
    let mut p = current.clone();
    let Some(obj) = body.as_object() else {
        return Err(wrong_type(BASE, "an object"));
    };
    let policy = |key: &str| -> Result<Option<&serde_json::Map<String, Value>>, PolicyInvalid> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(wrong_type(&format!("{BASE}.{key}"), "an object")),
        }
    };
    if let Some(o) = policy("quarantinePolicy")? {
        merge_status(&mut p.quarantine_policy.status, o, "quarantinePolicy")?;
    }
    if let Some(o) = policy("exportPolicy")? {
        merge_status(&mut p.export_policy.status, o, "exportPolicy")?;
    }
    if let Some(o) = policy("azureADAuthenticationAsArmPolicy")? {
        merge_status(
            &mut p.azure_ad_authentication_as_arm_policy.status,
            o,
            "azureADAuthenticationAsArmPolicy",
        )?;
    }
    if let Some(o) = policy("trustPolicy")? {
        merge_status(&mut p.trust_policy.status, o, "trustPolicy")?;
        match o.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.eq_ignore_ascii_case("Notary") => {}
            Some(Value::String(s)) => {
                return Err(out_of_range(
                    &format!("{BASE}.trustPolicy.type"),
                    format!(
                        "The value '{}' is not valid for '{BASE}.trustPolicy.type'. Allowed values: Notary.",
                        crate::reference::truncate(s)
                    ),
                ))
            }
            Some(_) => {
                return Err(wrong_type(&format!("{BASE}.trustPolicy.type"), "a string"));
            }
        }
    }
    let before = p.retention_policy.clone();
    if let Some(o) = policy("retentionPolicy")? {
        merge_status(&mut p.retention_policy.status, o, "retentionPolicy")?;
        let field = format!("{BASE}.retentionPolicy.days");
        match o.get("days") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let days = n
                    .as_i64()
                    .filter(|d| RETENTION_DAYS.contains(d))
                    .and_then(|d| i32::try_from(d).ok())
                    .ok_or_else(|| {
                        out_of_range(
                            &field,
                            format!(
                                "The value '{n}' is not valid for '{field}': the number of days must be an integer from {} to {}.",
                                RETENTION_DAYS.start(),
                                RETENTION_DAYS.end()
                            ),
                        )
                    })?;
                p.retention_policy.days = days;
            }
            Some(_) => return Err(wrong_type(&field, "an integer")),
        }
    }
    let r = &mut p.retention_policy;
    if r.days != before.days || r.status != before.status || r.last_updated_time.is_none() {
        r.last_updated_time = Some(now);
    }
    Ok(p)
}

/// `o.status` (`enabled`/`disabled`, any case) into `status`.
fn merge_status(
    status: &mut String,
    o: &serde_json::Map<String, Value>,
    policy: &str,
) -> Result<(), PolicyInvalid> {
    let field = format!("properties.policies.{policy}.status");
    match o.get("status") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            let Some(v) = STATUSES.iter().find(|a| a.eq_ignore_ascii_case(s)) else {
                return Err(out_of_range(
                    &field,
                    format!(
                        "The value '{}' is not valid for '{field}'. Allowed values: enabled, disabled.",
                        crate::reference::truncate(s)
                    ),
                ));
            };
            *status = (*v).to_owned();
            Ok(())
        }
        Some(_) => Err(wrong_type(&field, "a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time")
    }

    #[test]
    fn defaults_are_acrs() {
        let v = serde_json::to_value(Policies::default()).expect("json");
        assert_eq!(
            v,
            json!({
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {"days": 7, "status": "disabled"},
                "exportPolicy": {"status": "enabled"},
                "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
            })
        );
        // Stored properties written before policies existed read as the defaults.
        let p: Policies = serde_json::from_value(json!({})).expect("parse");
        assert_eq!(p, Policies::default());
    }

    #[test]
    fn a_partial_body_keeps_the_rest_and_stamps_a_change() {
        let first = merge(
            &Policies::default(),
            &json!({"retentionPolicy": {"status": "Enabled", "days": 0}}),
            now(),
        )
        .expect("valid");
        assert!(first.retention_policy.enabled());
        assert_eq!(first.retention_policy.days, 0);
        assert_eq!(first.retention_policy.last_updated_time, Some(now()));
        assert_eq!(first.export_policy.status, "enabled");
        // What az sends back: every policy as read, lastUpdatedTime included (ignored).
        let later = now() + chrono::Duration::hours(1);
        let mut echoed = serde_json::to_value(&first).expect("json");
        echoed["retentionPolicy"]["lastUpdatedTime"] = json!("2000-01-01T00:00:00Z");
        let same = merge(&first, &echoed, later).expect("valid");
        assert_eq!(same, first, "nothing changed: the time stays");
        let changed =
            merge(&first, &json!({"retentionPolicy": {"days": 30}}), later).expect("valid");
        assert_eq!(changed.retention_policy.days, 30);
        assert!(changed.retention_policy.enabled());
        assert_eq!(changed.retention_policy.last_updated_time, Some(later));
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let cases = [
            (json!([]), "InvalidRequestContent", "properties.policies"),
            (
                json!({"retentionPolicy": 3}),
                "InvalidRequestContent",
                "properties.policies.retentionPolicy",
            ),
            (
                json!({"retentionPolicy": {"days": 366}}),
                "InvalidParameter",
                "properties.policies.retentionPolicy.days",
            ),
            (
                json!({"retentionPolicy": {"days": -1}}),
                "InvalidParameter",
                "properties.policies.retentionPolicy.days",
            ),
            (
                json!({"retentionPolicy": {"days": 1.5}}),
                "InvalidParameter",
                "properties.policies.retentionPolicy.days",
            ),
            (
                json!({"retentionPolicy": {"days": "7"}}),
                "InvalidRequestContent",
                "properties.policies.retentionPolicy.days",
            ),
            (
                json!({"retentionPolicy": {"status": "on"}}),
                "InvalidParameter",
                "properties.policies.retentionPolicy.status",
            ),
            (
                json!({"quarantinePolicy": {"status": true}}),
                "InvalidRequestContent",
                "properties.policies.quarantinePolicy.status",
            ),
            (
                json!({"trustPolicy": {"type": "Cosign"}}),
                "InvalidParameter",
                "properties.policies.trustPolicy.type",
            ),
        ];
        for (body, code, target) in cases {
            let e = merge(&Policies::default(), &body, now()).expect_err("refused");
            assert_eq!(
                (e.code, e.invalid.target.as_str()),
                (code, target),
                "{body}"
            );
        }
        let ok = merge(
            &Policies::default(),
            &json!({"retentionPolicy": {"days": 365}}),
            now(),
        );
        assert!(ok.is_ok());
    }
}
