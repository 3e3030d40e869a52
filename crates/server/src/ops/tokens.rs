//! create_authentication_tokens, refresh_operation_token, login, logout: the caller's own
//! credentials, as Harper's operations give them.
//!
//! Three of them may come without credentials, bringing their own: a username and
//! password (`create_authentication_tokens`, `login`) or a refresh token
//! (`refresh_operation_token`, in the body or as the bearer). Each still asks the
//! permission check once it knows the user.

use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use shoal_auth::{Access, Action, AuthError, User, Via};

use super::{Call, Operation, Reply, UnknownOperation};
use crate::error::ApiError;
use crate::request::OpRequest;
use crate::{AppState, cookie};

/// A request that brought no usable credentials (`refused` says why): only the operations
/// that take their own may go on.
pub(super) async fn without_credentials(
    state: &AppState,
    operation: Result<Operation, UnknownOperation>,
    req: OpRequest,
    call: Call<'_>,
    refused: AuthError,
) -> Result<Reply, ApiError> {
    let missing = matches!(refused, AuthError::MissingCredentials);
    match operation {
        Ok(Operation::CreateAuthenticationTokens) if missing => {
            create_authentication_tokens(state, None, req, call).await
        }
        Ok(Operation::Login) if missing => login(state, req, call).await,
        Ok(Operation::RefreshOperationToken) => refresh_operation_token(state, req, call, !missing),
        _ => Err(refused.into()),
    }
}

/// Tokens for the body's `username` and `password` if it names either, else for the
/// caller (Harper: "invalid credentials" when the body's do not hold).
pub(super) async fn create_authentication_tokens(
    state: &AppState,
    caller: Option<&User>,
    req: OpRequest,
    call: Call<'_>,
) -> Result<Reply, ApiError> {
    let username = req.optional::<String>(&["username"])?;
    let password = req.optional::<String>(&["password"])?;
    let user = match (username, password, caller) {
        (None, None, Some(caller)) => caller.clone(),
        (None, None, None) => return Err(AuthError::MissingCredentials.into()),
        (Some(username), Some(password), _) => state
            .auth
            .check_password(&username, &password, call.peer)
            .await
            .map_err(invalid_credentials)?
            .as_ref()
            .clone(),
        _ => return Err(AuthError::InvalidCredentials.into()),
    };
    check(state, &user, Operation::CreateAuthenticationTokens)?;
    let tokens = state.auth.create_tokens(&user, &state.tokens)?;
    Ok(Reply::Json(json!({
        "operation_token": tokens.operation_token,
        "refresh_token": tokens.refresh_token,
    })))
}

/// A new operation token for the refresh token in the body (`refresh_token`) or, as
/// Harper's documentation shows it, the bearer. A bearer that is no operation token
/// (`bearer_refused`) must be a refresh token, whatever the body says, as in Harper.
pub(super) fn refresh_operation_token(
    state: &AppState,
    req: OpRequest,
    call: Call<'_>,
    bearer_refused: bool,
) -> Result<Reply, ApiError> {
    let from_body = if bearer_refused {
        None
    } else {
        req.optional::<String>(&["refresh_token"])?
    };
    let in_body = from_body.is_some();
    let token = match from_body {
        Some(token) => token,
        None => bearer(call).ok_or_else(|| ApiError::bad_request("'refresh_token' is required"))?,
    };
    let user = state.auth.refresh_token_user(&token).map_err(|e| match e {
        // Harper answers an expired refresh token in the body 403 (its operation's own
        // check), and one as the bearer 401 (its authentication's).
        AuthError::TokenExpired if in_body => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
        e => e.into(),
    })?;
    check(state, &user, Operation::RefreshOperationToken)?;
    let operation_token = state.auth.create_operation_token(&user, &state.tokens)?;
    Ok(Reply::Json(json!({ "operation_token": operation_token })))
}

/// Checks the body's `username` and `password` and starts a session: its cookie comes
/// back in `Set-Cookie`.
pub(super) async fn login(
    state: &AppState,
    req: OpRequest,
    call: Call<'_>,
) -> Result<Reply, ApiError> {
    let username = req.string(&["username"])?;
    let password = req.string(&["password"])?;
    let (user, session) = state
        .auth
        .login(&username, &password, call.peer, &state.tokens)
        .await?;
    check(state, &user, Operation::Login)?;
    with_cookie(
        "Login successful",
        cookie::set(call.headers, &session, call.secure),
    )
}

/// Ends the request's session, if it has one, and tells the browser to forget it.
pub(super) async fn logout(state: &AppState, call: Call<'_>) -> Result<Reply, ApiError> {
    if let Some(id) = cookie::session_id(call.headers) {
        state.auth.logout(&id).await?;
    }
    with_cookie(
        "Logout successful",
        cookie::clear(call.headers, call.secure),
    )
}

fn check(state: &AppState, user: &User, operation: Operation) -> Result<(), ApiError> {
    let access = Access {
        via: Via::Operations,
        operation: operation.name(),
        action: Action::Own,
        database: None,
        table: None,
    };
    state.auth.check(user, &access)?;
    Ok(())
}

/// Harper's answer to a username and password that do not hold, whatever the reason;
/// the limits on failed logins keep their own answer.
fn invalid_credentials(e: AuthError) -> AuthError {
    match e {
        AuthError::LoginFailed | AuthError::Inactive | AuthError::MissingCredentials => {
            AuthError::InvalidCredentials
        }
        e => e,
    }
}

fn bearer(call: Call<'_>) -> Option<String> {
    let value = call.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

fn with_cookie(message: &str, cookie: Option<HeaderValue>) -> Result<Reply, ApiError> {
    let mut response = axum::Json(json!({ "message": message })).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(Reply::Response(response))
}
