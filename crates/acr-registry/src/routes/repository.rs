//! ACR's repository delete, `DELETE /acr/v1/<name>`: the one call of ACR's `/acr/v1` API the
//! distribution API has no equivalent for, served so that whoever deletes repositories (a
//! registry deletion, the login servers' `/acr/v1`) can do it in one call on this backend.
//! Answers 202 `{"manifestsDeleted":[…],"tagsDeleted":[…]}`, or 404 `NAME_UNKNOWN`.

use super::*;

pub(crate) async fn acr_v1(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = RequestCtx::new(&inner, &parts);
    drain(body).await;
    let result = async {
        let name = parts
            .uri
            .path()
            .strip_prefix("/acr/v1/")
            .map(percent_decode)
            .unwrap_or_default();
        // Only the repository itself: its sub-resources (_tags, _manifests) are not served here.
        if name.is_empty() || name.split('/').any(|c| c.starts_with('_')) {
            return Err(ApiError::unsupported(
                StatusCode::NOT_FOUND,
                "unknown endpoint",
            ));
        }
        let repo = ctx.repo(&name)?;
        if parts.method != Method::DELETE {
            return Err(method_not_allowed());
        }
        inner
            .require(&ctx, Target::Repo(&repo, DELETE), &[])
            .await?;
        let _guard = inner.repo_lock(&repo.full).lock().await;
        match inner
            .store
            .delete_repository(&repo.full)
            .await
            .map_err(internal("delete repository"))?
        {
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                Code::NameUnknown,
                "repository name not known to registry",
            )
            .detail(json!({ "name": repo.visible }))),
            Some((manifests, tags)) => {
                let body = json!({
                    "manifestsDeleted": manifests.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                    "tagsDeleted": tags,
                });
                Ok(json_response(StatusCode::ACCEPTED, body.to_string()))
            }
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
