//! add_component, set_component_file, get_component_file, get_components, drop_component.

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;

pub(super) async fn add_component(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let project = req.string(&["project"])?;
    state.components.add(&state.store, &project).await?;
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
        .set_file(&state.store, &project, &file, payload.as_deref())
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
    Ok(Reply::Json(state.components.tree()?))
}

pub(super) async fn drop_component(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let project = req.string(&["project"])?;
    let file = req.optional::<String>(&["file"])?;
    state
        .components
        .remove(&state.store, &project, file.as_deref())
        .await?;
    Ok(Reply::message(format!("Successfully dropped: {project}")))
}
