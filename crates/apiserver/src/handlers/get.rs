//! GET of one object.

use http::{Response, StatusCode};

use super::{object_response, Call};
use crate::body::Body;
use crate::errors::ApiError;
use crate::object;

pub async fn get(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let kv = call
        .server
        .store
        .get(&call.key())
        .await?
        .ok_or_else(|| ApiError::not_found(resource, call.name()))?;
    object_response(&call, StatusCode::OK, object::render(&kv), &[])
}
