//! add_component, set_component_file, get_component_file, get_components, drop_component.

use axum::http::StatusCode;

use super::Reply;
use crate::error::ApiError;
use crate::request::OpRequest;
use crate::{AppState, StoreTables};

pub(super) async fn add_component(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let project = req.string(&["project"])?;
    state
        .components
        .add(&StoreTables(&state.store), &project)
        .await?;
    Ok(Reply::message(format!(
        "Successfully added project: {project}"
    )))
}

pub(super) async fn set_component_file(
    state: &AppState,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let project = req.string(&["project"])?;
    let file = req.string(&["file"])?;
    // Without a payload Harper makes a folder.
    let payload = req.optional::<String>(&["payload"])?;
    state
        .components
        .set_file(
            &StoreTables(&state.store),
            &project,
            &file,
            payload.as_deref(),
        )
        .await?;
    Ok(Reply::message(format!(
        "Successfully set component: {file}"
    )))
}

pub(super) fn get_component_file(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let project = req.string(&["project"])?;
    let file = req.string(&["file"])?;
    Ok(Reply::message(state.components.get_file(&project, &file)?))
}

pub(super) fn get_components(state: &AppState) -> Result<Reply, ApiError> {
    // Names, numbers and strings only: serialising cannot fail.
    let tree = serde_json::to_value(state.components.tree()?).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("components tree: {e}"),
        )
    })?;
    Ok(Reply::Json(tree))
}

pub(super) async fn drop_component(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let project = req.string(&["project"])?;
    let file = req.optional::<String>(&["file"])?;
    state
        .components
        .remove(&StoreTables(&state.store), &project, file.as_deref())
        .await?;
    Ok(Reply::message(format!("Successfully dropped: {project}")))
}
