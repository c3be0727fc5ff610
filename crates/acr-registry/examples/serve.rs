//! Serves the registry alone, for trying real clients against it:
//! `cargo run -p acr-registry --example serve -- <data-dir> [addr] [user:password]`
//! (default address 127.0.0.1:5000; with `user:password`, that user may do everything).

use std::sync::Arc;
use std::time::Duration;

use acr_registry::{Action, Authenticator, Registry, RegistryConfig};
use futures::future::BoxFuture;

struct OneUser(String, String);

impl Authenticator for OneUser {
    fn authorize<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
        _repository: Option<&'a str>,
        _actions: &'a [Action],
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move { username == self.0 && password == self.1 })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let data_dir = args
        .next()
        .ok_or("usage: serve <data-dir> [addr] [user:password]")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5000".to_owned());
    let auth = args.next().and_then(|up| {
        up.split_once(':')
            .map(|(u, p)| Arc::new(OneUser(u.to_owned(), p.to_owned())) as Arc<dyn Authenticator>)
    });
    let registry = Registry::open(RegistryConfig {
        data_dir: data_dir.into(),
        login_server_suffix: Some("azurecr.io".to_owned()),
        auth,
        token_lifetime: Duration::from_secs(3600),
        durability: acr_registry::Durability::None,
        upload_idle_timeout: acr_registry::UPLOAD_IDLE_TIMEOUT,
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("registry on http://{}", listener.local_addr()?);
    axum::serve(listener, registry.router()).await?;
    Ok(())
}
