//! The ARM caller: who is calling (from the bearer token), and with `--auth arm-rbac` whether
//! they may (the role assignments' checks).
//!
//! Every ARM request's bearer token is decoded into a [`Caller`] (its `oid`, for `systemData`
//! and for permissions). In the default mode any token, or none, is accepted. In `arm-rbac`
//! mode a token is required (signed by our token endpoint when a key is configured) and the
//! principal needs the action on the scope, from the role assignments of the RBAC file; denials
//! use ARM's `AuthorizationFailed` / `LinkedAuthorizationFailed` shapes.

use std::convert::Infallible;
use std::sync::Arc;

use acr_core::arm::RegistryId;
use acr_core::rbac::{self, RbacConfig};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// How requests are authorized.
#[derive(Debug, Clone, Default)]
pub enum AuthMode {
    /// Any token (or none) is accepted.
    #[default]
    Open,
    /// Role assignments decide; `verify_signature` requires tokens signed with our key.
    ArmRbac {
        rbac: Arc<RbacConfig>,
        verify_signature: bool,
    },
}

/// The principal behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `oid`; empty when the request had no token (default mode only).
    pub oid: String,
    /// What ARM names "the client" in denials: the user's name, else the `oid`.
    pub client: String,
    /// `systemData.createdByType`: `Application` for app tokens, `User` otherwise, `Key` without a token.
    pub kind: &'static str,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            oid: String::new(),
            client: String::new(),
            kind: "Key",
        }
    }

    /// The name `systemData` shows.
    pub fn display(&self) -> String {
        if self.oid.is_empty() {
            "acr-import".to_owned()
        } else {
            self.oid.clone()
        }
    }
}

/// The caller [`identify`] found; anonymous on a route it does not cover.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::anonymous))
    }
}

fn unauthorized(code: &str, message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, code, message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(
            "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\"",
        ),
    );
    resp
}

/// Decodes the caller of every request under `/subscriptions`; in `arm-rbac` mode refuses
/// requests without a valid token.
pub async fn identify(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    let strict = matches!(state.config.auth, AuthMode::ArmRbac { .. });
    let caller = match token {
        None if strict => {
            return unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        }
        None => Caller::anonymous(),
        Some(t) => match rbac::decode_jwt_claims(&t) {
            Ok(claims) => {
                if let AuthMode::ArmRbac {
                    verify_signature: true,
                    ..
                } = &state.config.auth
                {
                    if let Err(why) = crate::tokens::verify_minted(&state.config.identity, &t) {
                        tracing::info!(reason = %why, "token refused");
                        return unauthorized(
                            "InvalidAuthenticationToken",
                            "The access token is invalid: its signature or lifetime could not be verified.",
                        );
                    }
                }
                let is_user = claims.upn.is_some() || claims.unique_name.is_some();
                Caller {
                    client: claims.client(),
                    kind: if is_user { "User" } else { "Application" },
                    oid: claims.oid,
                }
            }
            Err(_) if strict => {
                return unauthorized(
                    "InvalidAuthenticationToken",
                    "The access token is invalid: it is not a JWT with an 'oid' claim.",
                )
            }
            Err(_) => Caller::anonymous(),
        },
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn denial(d: rbac::Denial) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, d.code, d.message)
}

/// `action` on `scope`, or `AuthorizationFailed`.
pub fn authorize(
    state: &AppState,
    caller: &Caller,
    action: &str,
    scope: &str,
) -> Result<(), ApiError> {
    let AuthMode::ArmRbac { rbac, .. } = &state.config.auth else {
        return Ok(());
    };
    if rbac.is_allowed(&caller.oid, action, scope) {
        return Ok(());
    }
    Err(denial(rbac::authorization_failed(
        &caller.client,
        &caller.oid,
        action,
        scope,
    )))
}

/// importImage on the target, and read on `source`: an emulated source registry reached
/// without credentials.
pub fn authorize_import(
    state: &AppState,
    caller: &Caller,
    target: &RegistryId,
    source: Option<&RegistryId>,
) -> Result<(), ApiError> {
    let AuthMode::ArmRbac { rbac, .. } = &state.config.auth else {
        return Ok(());
    };
    let source_scope = source.map(RegistryId::to_string);
    rbac::check_import(
        rbac,
        &rbac::Principal::new(&caller.oid, &caller.client),
        &target.to_string(),
        source_scope.as_deref(),
    )
    .map_err(denial)
}
