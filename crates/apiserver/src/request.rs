//! Request decoding: an HTTP method, path and query become a typed [`RequestInfo`] and
//! [`Query`] before anything touches the store (upstream's `RequestInfoFactory`).

use std::collections::HashMap;

use http::Method;

use crate::errors::ApiError;
use crate::kinds;
use crate::registry::{self, Resource, SubresourceKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    /// The verb as discovery lists it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request on a served resource.
pub struct RequestInfo {
    pub verb: Verb,
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl RequestInfo {
    /// What the addressed subresource is; routing lets through only those the resource
    /// serves.
    pub fn subresource_kind(&self) -> Option<SubresourceKind> {
        self.subresource
            .as_deref()
            .and_then(|s| self.resource.subresource(s))
            .map(|s| s.handler)
    }
}

/// What a path addresses.
pub enum Route {
    Resource(RequestInfo),
    /// `/api`, `/apis`, `/api/v1`, `/apis/<group>`, `/apis/<group>/<version>`.
    Discovery(Vec<String>),
    Version,
    /// `/healthz`, `/livez`, `/readyz`, optionally one named check (`/readyz/etcd`).
    Health {
        endpoint: String,
        check: Option<String>,
    },
    OpenApiV2,
    OpenApiV3(Option<String>),
}

/// Which methods a path outside the resources answers, as kube-apiserver's handlers for it
/// do. go-restful web services serve the legacy `/api`, `/api/<version>`,
/// `/apis/<group>/<version>` and `/version` with one GET route each, and go-restful answers
/// any other method (HEAD included) with 405 (`serviceErrorHandler` in
/// `apiserver/pkg/server/handler.go`). The aggregator's `/apis` and `/apis/<group>`
/// handlers (`kube-aggregator/pkg/apiserver/handler_apis.go`), kube-openapi's `/openapi/v2`
/// and `/openapi/v3` handlers and the health checks (`apiserver/pkg/server/healthz`) are
/// plain `http.Handler`s that serve whatever the method; a HEAD gets the headers alone.
fn get_only(method: &Method, route: Route) -> Result<Route, ApiError> {
    if method == Method::GET {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

pub fn route(method: &Method, path: &str, query: &Query) -> Result<Route, ApiError> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        ["version"] => return get_only(method, Route::Version),
        [h, check @ ..] if matches!(*h, "healthz" | "livez" | "readyz") => {
            return Ok(Route::Health {
                endpoint: h.to_string(),
                check: (!check.is_empty()).then(|| check.join("/")),
            })
        }
        ["openapi", "v2"] => return Ok(Route::OpenApiV2),
        ["openapi", "v3"] => return Ok(Route::OpenApiV3(None)),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApiV3(Some(rest.join("/")))),
        _ => {}
    }
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return get_only(method, Route::Discovery(owned(&parts))),
        ["apis"] | ["apis", _] => return Ok(Route::Discovery(owned(&parts))),
        // A version nobody serves has no web service: 404 whatever the method.
        ["api", version] if registry::serves("", version) => {
            return get_only(method, Route::Discovery(owned(&parts)))
        }
        ["apis", group, version] if registry::serves(group, version) => {
            return get_only(method, Route::Discovery(owned(&parts)))
        }
        ["api", _] | ["apis", _, _] => return Err(ApiError::RouteNotFound),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::RouteNotFound),
    };

    let mut rest: &[&str] = rest;
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        // `/namespaces/foo/status` is the namespace's own subresource; anything else after
        // the namespace name is a namespaced resource.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::RouteNotFound),
    };
    let resource = registry::find(group, version, plural).ok_or(ApiError::RouteNotFound)?;
    // The namespace resource addresses itself by name, not by namespace.
    let (namespace, name) = if !resource.namespaced {
        if std::ptr::eq(resource, &kinds::namespace::RESOURCE) && rest.len() >= 2 {
            (None, name)
        } else if namespace.is_some() && rest.first() != Some(&"namespaces") {
            return Err(ApiError::RouteNotFound);
        } else {
            (None, name)
        }
    } else {
        (namespace, name)
    };
    if let Some(sub) = &subresource {
        if resource.subresource(sub).is_none() {
            return Err(ApiError::RouteNotFound);
        }
    }
    let verb = match (method, name.is_some()) {
        (&Method::GET, true) => {
            if query.watch() {
                Verb::Watch
            } else {
                Verb::Get
            }
        }
        (&Method::GET, false) => {
            if query.watch() {
                Verb::Watch
            } else {
                Verb::List
            }
        }
        (&Method::POST, false) => Verb::Create,
        // POST on an item is how subresources such as binding are created.
        (&Method::POST, true) if subresource.is_some() => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) if resource.allows("deletecollection") => Verb::DeleteCollection,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    // A subresource takes only its own verbs (PATCH of `namespaces/x/finalize` is a 405).
    if let Some(sub) = subresource.as_deref().and_then(|s| resource.subresource(s)) {
        if !sub.verbs.contains(&verb.as_str()) {
            return Err(ApiError::MethodNotAllowed);
        }
    }
    Ok(Route::Resource(RequestInfo {
        verb,
        resource,
        namespace,
        name,
        subresource,
    }))
}

fn owned(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Decoded query parameters. Unknown parameters are kept so handlers can refuse what they
/// do not implement instead of ignoring it.
#[derive(Debug, Default, Clone)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut params = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(decode(k), decode(v));
        }
        Query { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | ""))
    }

    pub fn watch(&self) -> bool {
        matches!(self.get("watch"), Some("true" | "1"))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.non_empty(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("invalid value for {key}: {v:?}"))),
        }
    }

    /// `dryRun=All` (the only value upstream accepts).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.non_empty("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid dryRun value {other:?}: supported values: \"All\""
            ))),
        }
    }

    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.non_empty("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other}; supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str, query: &str) -> RequestInfo {
        match route(&method, path, &Query::parse(Some(query))) {
            Ok(Route::Resource(info)) => info,
            _ => panic!("{path} did not route to a resource"),
        }
    }

    #[test]
    fn namespaced_paths() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods/p/status", "");
        assert_eq!(i.verb, Verb::Get);
        assert_eq!(i.resource.plural, "pods");
        assert_eq!(i.namespace.as_deref(), Some("default"));
        assert_eq!(i.name.as_deref(), Some("p"));
        assert_eq!(i.subresource.as_deref(), Some("status"));
        let i = info(Method::GET, "/api/v1/pods", "watch=1");
        assert_eq!(i.verb, Verb::Watch);
        assert!(i.namespace.is_none());
    }

    #[test]
    fn namespace_itself() {
        let i = info(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(i.resource.plural, "namespaces");
        assert_eq!(i.name.as_deref(), Some("kube-system"));
        assert!(i.namespace.is_none());
        let i = info(Method::PUT, "/api/v1/namespaces/x/status", "");
        assert_eq!(i.subresource.as_deref(), Some("status"));
        // Upstream serves no deletecollection on namespaces; on pods it does.
        assert!(matches!(
            route(&Method::DELETE, "/api/v1/namespaces", &Query::default()),
            Err(ApiError::MethodNotAllowed)
        ));
        let i = info(Method::DELETE, "/api/v1/namespaces/a/pods", "");
        assert_eq!(i.verb, Verb::DeleteCollection);
    }

    #[test]
    fn subresources_take_only_their_verbs() {
        let i = info(Method::PUT, "/api/v1/namespaces/x/finalize", "");
        assert_eq!(
            (i.verb, i.subresource.as_deref()),
            (Verb::Update, Some("finalize"))
        );
        assert_eq!(i.name.as_deref(), Some("x"));
        let refused = [
            (Method::PATCH, "/api/v1/namespaces/x/finalize"),
            (Method::GET, "/api/v1/namespaces/x/finalize"),
            (Method::DELETE, "/api/v1/namespaces/x/status"),
            (Method::PUT, "/api/v1/namespaces/a/pods/p/binding"),
            (Method::DELETE, "/api/v1/namespaces/a/pods/p/log"),
        ];
        for (method, path) in refused {
            assert!(
                matches!(
                    route(&method, path, &Query::default()),
                    Err(ApiError::MethodNotAllowed)
                ),
                "{method} {path}"
            );
        }
        let i = info(Method::POST, "/api/v1/namespaces/a/pods/p/binding", "");
        assert_eq!(i.verb, Verb::Create);
        let i = info(Method::PATCH, "/api/v1/namespaces/a/pods/p/status", "");
        assert_eq!(i.verb, Verb::Patch);
    }

    #[test]
    fn groups_and_unknowns() {
        let i = info(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            "",
        );
        assert_eq!(i.verb, Verb::Create);
        assert_eq!(i.resource.kind, "Lease");
        assert!(route(&Method::GET, "/api/v1/widgets", &Query::default()).is_err());
        assert!(route(
            &Method::GET,
            "/api/v1/namespaces/a/pods/p/nope",
            &Query::default()
        )
        .is_err());
    }

    /// Issue 13 7: the paths outside the resources answer the methods upstream's handlers
    /// for them answer (see [`get_only`]).
    #[test]
    fn non_resource_paths_by_method() {
        use Method as M;
        enum Want {
            Served,
            MethodNotAllowed,
            NotFound,
        }
        use Want::*;
        let head = M::HEAD;
        let cases: &[(&M, &str, Want)] = &[
            // go-restful web services: GET only.
            (&M::GET, "/api", Served),
            (&M::POST, "/api", MethodNotAllowed),
            (&head, "/api", MethodNotAllowed),
            (&M::GET, "/api/v1", Served),
            (&M::DELETE, "/api/v1/", MethodNotAllowed),
            (&M::POST, "/api/v2", NotFound),
            (&M::GET, "/apis/coordination.k8s.io/v1", Served),
            (&M::PUT, "/apis/coordination.k8s.io/v1", MethodNotAllowed),
            (&M::PATCH, "/apis/events.k8s.io/v1", MethodNotAllowed),
            (&M::POST, "/apis/coordination.k8s.io/v2", NotFound),
            (&M::POST, "/apis/example.com/v1", NotFound),
            (&M::GET, "/version", Served),
            (&M::POST, "/version", MethodNotAllowed),
            (&head, "/version", MethodNotAllowed),
            // The aggregator's, kube-openapi's and the health handlers: any method.
            (&M::POST, "/apis", Served),
            (&M::DELETE, "/apis/coordination.k8s.io", Served),
            (&M::PUT, "/openapi/v2", Served),
            (&M::POST, "/openapi/v3", Served),
            (&M::DELETE, "/openapi/v3/api/v1", Served),
            (&M::POST, "/healthz", Served),
            (&head, "/readyz/etcd", Served),
            (&M::PATCH, "/livez", Served),
        ];
        for (method, path, want) in cases {
            let got = route(method, path, &Query::default());
            match (want, &got) {
                (Served, Ok(r)) => assert!(!matches!(r, Route::Resource(_)), "{method} {path}"),
                (MethodNotAllowed, Err(ApiError::MethodNotAllowed))
                | (NotFound, Err(ApiError::RouteNotFound)) => {}
                _ => panic!(
                    "{method} {path}: {}",
                    got.err().map_or("served".into(), |e| e.to_string())
                ),
            }
        }
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("labelSelector=app+in+%28a%2Cb%29&watch=true"));
        assert_eq!(q.get("labelSelector"), Some("app in (a,b)"));
        assert!(q.watch());
    }
}
