//! Authorization, such as it is before RBAC (issue 17): every authenticated user may do
//! anything, except bootstrap-token users (group `system:bootstrappers`), who get what
//! upstream's default roles give them: `system:discovery` and `system:public-info-viewer`
//! (every path outside the resources: discovery, OpenAPI, version, health) and
//! `system:node-bootstrapper` (create, get, list, watch `certificatesigningrequests`).
//! Anything else is upstream's 403 (`forbiddenMessage` in
//! `apiserver/pkg/endpoints/handlers/responsewriters/errors.go`).

use crate::authn::UserInfo;
use crate::bootstraptoken::BOOTSTRAPPERS;
use crate::request::Route;

/// What a request asks to do, as upstream's authorizer attributes name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        subresource: Option<&'a str>,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// `pods`, `deployments.apps`; empty for a path.
    pub qualified_resource: String,
    pub group: String,
    pub resource: String,
    pub name: String,
    pub message: String,
}

impl Denied {
    /// The `Status` message, as `errors.NewForbidden` writes it.
    pub fn status_message(&self) -> String {
        match (self.qualified_resource.is_empty(), self.name.is_empty()) {
            (true, _) => format!("forbidden: {}", self.message),
            (false, true) => format!("{} is forbidden: {}", self.qualified_resource, self.message),
            (false, false) => format!(
                "{} \"{}\" is forbidden: {}",
                self.qualified_resource, self.name, self.message
            ),
        }
    }
}

/// The verbs a bootstrapper may use on CSRs (upstream's `system:node-bootstrapper`).
const CSR_VERBS: &[&str] = &["create", "get", "list", "watch"];

/// Whether `user` may do `attrs`.
pub fn authorize(user: &UserInfo, attrs: &Attributes) -> Result<(), Denied> {
    let restricted = user.groups.iter().any(|g| g == BOOTSTRAPPERS)
        && !user.groups.iter().any(|g| g == crate::authn::MASTERS);
    if !restricted {
        return Ok(());
    }
    match attrs {
        Attributes::NonResource { .. } => Ok(()),
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource: None,
            ..
        } if *group == "certificates.k8s.io"
            && *resource == "certificatesigningrequests"
            && CSR_VERBS.contains(verb) =>
        {
            Ok(())
        }
        _ => Err(denied(user, attrs)),
    }
}

fn denied(user: &UserInfo, attrs: &Attributes) -> Denied {
    match attrs {
        Attributes::NonResource { verb, path } => Denied {
            qualified_resource: String::new(),
            group: String::new(),
            resource: String::new(),
            name: String::new(),
            message: format!("User {:?} cannot {verb} path {path:?}", user.name),
        },
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let full = match subresource {
                Some(s) => format!("{resource}/{s}"),
                None => resource.to_string(),
            };
            let scope = match namespace {
                Some(ns) if !ns.is_empty() => format!("in the namespace {ns:?}"),
                _ => "at the cluster scope".to_string(),
            };
            Denied {
                qualified_resource: if group.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}.{group}")
                },
                group: group.to_string(),
                resource: resource.to_string(),
                name: name.unwrap_or("").to_string(),
                message: format!(
                    "User {:?} cannot {verb} resource {full:?} in API group {group:?} {scope}",
                    user.name
                ),
            }
        }
    }
}

/// The attributes of a routed request (`path` for the non-resource ones).
pub fn attributes<'a>(route: &'a Route, method: &http::Method, path: &'a str) -> Attributes<'a> {
    match route {
        Route::Resource(info) => Attributes::Resource {
            verb: info.verb.as_str(),
            group: info.resource.group,
            resource: info.resource.plural,
            subresource: info.subresource.as_deref(),
            namespace: info.namespace.as_deref(),
            name: info.name.as_deref(),
        },
        _ => Attributes::NonResource {
            verb: non_resource_verb(method),
            path,
        },
    }
}

/// Upstream's verb for a request outside the resources: the method, lowercased.
fn non_resource_verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::POST => "post",
        http::Method::PUT => "put",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrapper() -> UserInfo {
        UserInfo::new(
            "system:bootstrap:abcdef",
            "",
            &[BOOTSTRAPPERS, crate::bootstraptoken::NODE_TOKEN_GROUP],
        )
    }

    fn res<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource: None,
            namespace,
            name,
        }
    }

    #[test]
    fn bootstrappers_get_discovery_and_csrs_only() {
        let b = bootstrapper();
        let csr = "certificatesigningrequests";
        let cases: Vec<(Attributes, Result<(), &str>)> = vec![
            (Attributes::NonResource { verb: "get", path: "/api" }, Ok(())),
            (Attributes::NonResource { verb: "get", path: "/version" }, Ok(())),
            (res("create", "certificates.k8s.io", csr, None, None), Ok(())),
            (res("watch", "certificates.k8s.io", csr, None, None), Ok(())),
            (res("get", "certificates.k8s.io", csr, None, Some("x")), Ok(())),
            (
                res("delete", "certificates.k8s.io", csr, None, Some("x")),
                Err("certificatesigningrequests.certificates.k8s.io \"x\" is forbidden: User \"system:bootstrap:abcdef\" cannot delete resource \"certificatesigningrequests\" in API group \"certificates.k8s.io\" at the cluster scope"),
            ),
            (
                res("list", "", "pods", Some("default"), None),
                Err("pods is forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
            ),
            (
                res("list", "apps", "deployments", None, None),
                Err("deployments.apps is forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"),
            ),
        ];
        for (attrs, want) in cases {
            let got = authorize(&b, &attrs).map_err(|d| d.status_message());
            assert_eq!(got, want.map_err(str::to_string), "{attrs:?}");
        }
        let sub = Attributes::Resource {
            verb: "update",
            group: "certificates.k8s.io",
            resource: csr,
            subresource: Some("approval"),
            namespace: None,
            name: Some("x"),
        };
        assert!(authorize(&b, &sub).is_err());
    }

    #[test]
    fn others_are_not_restricted() {
        let admin = UserInfo::new("system:admin", "", &[crate::authn::MASTERS]);
        let node = UserInfo::new("system:node:n1", "", &["system:nodes"]);
        for u in [admin, node] {
            assert_eq!(authorize(&u, &res("list", "", "pods", None, None)), Ok(()));
        }
    }
}
