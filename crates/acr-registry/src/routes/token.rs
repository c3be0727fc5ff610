//! The token endpoint: Basic credentials (or a password grant) in, a signed token out.

use super::*;

/// `GET /oauth2/token?service=…&scope=…` with Basic credentials, and `POST` with a form
/// (`grant_type=password`), as distribution's token servers answer.
pub(crate) async fn token(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = RequestCtx::new(&inner, &parts);
    let result = if parts.method == Method::POST {
        match collect_limited(body, 64 << 10).await {
            Ok(b) => {
                let form = Query::parse(std::str::from_utf8(&b).ok());
                token_post(&inner, &ctx, &form).await
            }
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::Unsupported,
                "unreadable form",
            )),
        }
    } else if is_read(&parts.method) {
        let query = Query::parse(parts.uri.query());
        let creds = match &ctx.caller {
            Caller::Basic { user, pass } => Some((user.as_str(), pass.as_str())),
            _ => None,
        };
        let scopes: Vec<&str> = query.all("scope").collect();
        issue(&inner, &ctx, creds, &scopes, false).await
    } else {
        Err(method_not_allowed())
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn token_post(inner: &Inner, ctx: &RequestCtx, form: &Query) -> Result<Response, ApiError> {
    match form.get("grant_type") {
        Some("password") => {
            let user = form.get("username").unwrap_or("");
            let pass = form.get("password").unwrap_or("");
            let scopes: Vec<&str> = form.all("scope").collect();
            issue(inner, ctx, Some((user, pass)), &scopes, true).await
        }
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::Unsupported,
            "unsupported grant_type (password is)",
        )
        .detail(json!({ "grant_type": other }))),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::Unsupported,
            "grant_type missing",
        )),
    }
}

async fn issue(
    inner: &Inner,
    ctx: &RequestCtx,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
    post: bool,
) -> Result<Response, ApiError> {
    let mut grants: Vec<Grant> = Vec::new();
    let sub = match (&inner.auth, creds) {
        (None, c) => {
            // Open registry: whatever is asked is granted (tokens are then never checked).
            for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
                if let Some((kind, name, actions)) = access::parse_scope(scope) {
                    grants.push(Grant {
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                        actions: actions.split(',').map(str::to_owned).collect(),
                    });
                }
            }
            c.map(|(u, _)| u).unwrap_or("anonymous").to_owned()
        }
        (Some(_), None) => {
            return Err(ApiError::unauthorized("credentials required").header(
                header::WWW_AUTHENTICATE,
                &format!("Basic realm=\"{}\"", ctx.realm()),
            ))
        }
        (Some(authn), Some((user, pass))) => {
            if !authn.authorize(user, pass, None, &[]).await {
                return Err(
                    ApiError::unauthorized("invalid username or password").header(
                        header::WWW_AUTHENTICATE,
                        &format!("Basic realm=\"{}\"", ctx.realm()),
                    ),
                );
            }
            for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
                if let Some(g) = grant(authn.as_ref(), ctx, user, pass, scope).await {
                    grants.push(g);
                }
            }
            user.to_owned()
        }
    };
    let granted_scope: Vec<String> = grants
        .iter()
        .map(|g| {
            let name = if g.kind == "repository" {
                ctx.visible(&g.name).unwrap_or(&g.name)
            } else {
                &g.name
            };
            format!("{}:{}:{}", g.kind, name, g.actions.join(","))
        })
        .collect();
    let token = inner.tokens.mint(&sub, grants, ctx.now);
    let issued_at = chrono::DateTime::from_timestamp(ctx.now, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": inner.tokens.lifetime().as_secs(),
        "issued_at": issued_at,
    });
    if post {
        body["scope"] = json!(granted_scope.join(" "));
    }
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// What of one requested scope the Authenticator allows (`None`: nothing).
async fn grant(
    authn: &dyn Authenticator,
    ctx: &RequestCtx,
    user: &str,
    pass: &str,
    scope: &str,
) -> Option<Grant> {
    let (kind, name, actions) = access::parse_scope(scope)?;
    match kind {
        "repository" => {
            let repo = ctx.repo(name).ok()?;
            let wanted = Action::parse_list(actions);
            if wanted.is_empty() {
                return None;
            }
            let allowed: Vec<Action> =
                if authn.authorize(user, pass, Some(&repo.full), &wanted).await {
                    wanted
                } else {
                    let mut some = Vec::new();
                    for a in wanted {
                        if authn.authorize(user, pass, Some(&repo.full), &[a]).await {
                            some.push(a);
                        }
                    }
                    some
                };
            (!allowed.is_empty()).then(|| Grant {
                kind: "repository".to_owned(),
                name: repo.full,
                actions: allowed.iter().map(|a| a.as_str().to_owned()).collect(),
            })
        }
        "registry" if name == "catalog" => authn
            .authorize(user, pass, None, &[Action::Pull])
            .await
            .then(|| Grant {
                kind: "registry".to_owned(),
                name: "catalog".to_owned(),
                actions: vec!["*".to_owned()],
            }),
        _ => None,
    }
}
