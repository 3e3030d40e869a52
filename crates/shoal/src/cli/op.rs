//! `shoal op <operation> key=value ...`: like `harperdb <operation>`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::runfile::RunFile;

/// Arguments of `shoal op`.
#[derive(Debug, clap::Args)]
pub(crate) struct OpArgs {
    /// Operation name, e.g. `describe_all`.
    pub(crate) operation: String,
    /// Fields as `key=value`; a value that parses as JSON is sent as JSON, else as a string.
    pub(crate) fields: Vec<String>,
    /// Root folder of the node to talk to (its run file gives the address).
    #[arg(long, env = "SHOAL_ROOT", default_value = "shoal-data")]
    pub(crate) root: PathBuf,
    /// Operations API URL; overrides the root's run file.
    #[arg(long, env = "SHOAL_URL")]
    pub(crate) url: Option<String>,
    /// User name.
    #[arg(long, env = "SHOAL_ADMIN_USERNAME", default_value = "admin")]
    pub(crate) user: String,
    /// Password.
    #[arg(long, env = "SHOAL_ADMIN_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
}

/// Sends the operation and prints the answer; fails on an error status.
pub(crate) fn run(args: OpArgs) -> anyhow::Result<()> {
    let body = build(&args.operation, &args.fields)?;
    let url = match &args.url {
        Some(url) => url.clone(),
        None => format!("http://{}/", RunFile::read(&args.root)?.ops),
    };
    let password = args
        .password
        .context("a password is needed: --password or SHOAL_ADMIN_PASSWORD")?;
    let (status, text) = super::runtime()?.block_on(async {
        let response = reqwest::Client::new()
            .post(&url)
            .basic_auth(&args.user, Some(&password))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("sending to {url}"))?;
        let status = response.status();
        anyhow::Ok((status, response.text().await?))
    })?;
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("{pretty}");
    if !status.is_success() {
        bail!("the node answered {status}");
    }
    Ok(())
}

fn build(operation: &str, fields: &[String]) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("operation".into(), Value::from(operation));
    for field in fields {
        let Some((key, raw)) = field.split_once('=') else {
            bail!("expected key=value, got '{field}'");
        };
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::from(raw));
        body.insert(key.to_owned(), value);
    }
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_json() {
        let body = build(
            "insert",
            &[
                "table=dog".into(),
                r#"records=[{"id":1}]"#.into(),
                "limit=5".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"operation": "insert", "table": "dog", "records": [{"id": 1}], "limit": 5})
        );
        assert!(build("x", &["novalue".into()]).is_err());
    }
}
