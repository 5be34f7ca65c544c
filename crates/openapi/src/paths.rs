//! REST operations of the served resources, modelled once and rendered as
//! Swagger 2.0 or OpenAPI 3.0 path items the way kube-apiserver's installer
//! does (operation ids, descriptions, parameters, media types, and the
//! `x-kubernetes-action` / `x-kubernetes-group-version-kind` extensions).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::model::{self, GroupVersion, Gvk, ServedKind, Subresource};
use crate::params::{self, In, Param};
use crate::schemas::{Dialect, Schemas};

/// Media types of object responses. peapod encodes JSON and YAML only, so
/// unlike upstream the documents do not offer protobuf or CBOR.
const OBJECT_MEDIA_TYPES: &[&str] = &["application/json", "application/yaml"];
/// Media types of list and watch responses.
const WATCH_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/yaml",
];
/// Media types of `pods/{name}/log`.
const LOG_MEDIA_TYPES: &[&str] = &["application/json", "application/yaml", "text/plain"];
/// Request body media types of PATCH; kubectl apply checks the strategic
/// merge one before building a strategic merge patch from the document.
pub(crate) const PATCH_MEDIA_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

/// What a response body is.
#[derive(Clone, Debug)]
enum Body {
    /// An object of the named definition.
    Object(String),
    /// An object of the named definition, or a stream of them (list, watch).
    Watchable(String),
    /// Log text.
    Log,
    /// Whatever a connect upgrade returns.
    Any,
}

#[derive(Clone, Debug)]
struct Operation {
    method: Method,
    id: String,
    description: String,
    action: Option<&'static str>,
    gvk: Option<Gvk>,
    tag: String,
    params: Vec<Param>,
    /// The request body's definition; for PATCH it is meta/v1 Patch.
    request: Option<String>,
    /// Status codes and bodies; 401 is added to every operation.
    responses: Vec<(u16, Body)>,
}

#[derive(Default, Debug)]
struct PathItem {
    params: Vec<Param>,
    ops: BTreeMap<Method, Operation>,
}

/// One OpenAPI document under construction: its paths and the schemas they use.
pub(crate) struct Document {
    schemas: Schemas,
    paths: BTreeMap<String, PathItem>,
}

/// "a Pod", "an Event": upstream's article for operation descriptions.
fn article(kind: &str) -> &'static str {
    match kind.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U') => "an",
        _ => "a",
    }
}

impl Document {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Document {
            schemas: Schemas::new(dialect),
            paths: BTreeMap::new(),
        }
    }

    fn path(&mut self, path: String, params: Vec<Param>) -> &mut PathItem {
        let item = self.paths.entry(path).or_default();
        item.params = params;
        item
    }

    fn meta(&mut self, schema: model::SchemaFn) -> String {
        self.schemas.add(schema)
    }

    /// `/api/`: the core group's versions.
    pub(crate) fn add_core_versions(&mut self) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let name = self.schemas.add_kind(
            model::def::<meta::APIVersions>,
            model::gvk("", "v1", "APIVersions"),
        );
        self.simple_get(
            "/api/",
            "getCoreAPIVersions",
            "get available API versions",
            "core",
            name,
        );
    }

    /// `/apis/`: the list of groups.
    pub(crate) fn add_group_list(&mut self) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let name = self.schemas.add_kind(
            model::def::<meta::APIGroupList>,
            model::gvk("", "v1", "APIGroupList"),
        );
        self.simple_get(
            "/apis/",
            "getAPIVersions",
            "get available API versions",
            "apis",
            name,
        );
    }

    /// `/apis/<group>/`: one group and its versions.
    pub(crate) fn add_group(&mut self, group: &str) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let name = self.schemas.add_kind(
            model::def::<meta::APIGroup>,
            model::gvk("", "v1", "APIGroup"),
        );
        self.simple_get(
            &format!("/apis/{group}/"),
            &format!("get{}APIGroup", model::group_camel(group)),
            "get information of a group",
            &model::group_snake(group),
            name,
        );
    }

    fn simple_get(&mut self, path: &str, id: &str, description: &str, tag: &str, schema: String) {
        let op = Operation {
            method: Method::Get,
            id: id.to_owned(),
            description: description.to_owned(),
            action: None,
            gvk: None,
            tag: tag.to_owned(),
            params: Vec::new(),
            request: None,
            responses: vec![(200, Body::Object(schema))],
        };
        self.path(path.to_owned(), Vec::new())
            .ops
            .insert(op.method, op);
    }

    /// Every path of one group-version: its resource list, and each resource's
    /// collection, item, watch and subresource paths.
    pub(crate) fn add_group_version(&mut self, gv: &GroupVersion) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let prefix = gv.url_prefix();
        let infix = gv.op_infix();
        let tag = gv.tag();

        let resource_list = self.schemas.add_kind(
            model::def::<meta::APIResourceList>,
            model::gvk("", "v1", "APIResourceList"),
        );
        self.simple_get(
            &format!("{prefix}/"),
            &format!("get{infix}APIResources"),
            "get available resources",
            &tag,
            resource_list,
        );

        // Types every group-version's operations use, marked with their kinds
        // in each group-version as upstream does.
        let kinds_of = |kind: &'static str| {
            let mut kinds = vec![model::gvk("", "v1", kind)];
            if !gv.group.is_empty() {
                kinds.push(model::gvk(gv.group, gv.version, kind));
            }
            kinds
        };
        for k in kinds_of("DeleteOptions") {
            self.schemas.add_kind(model::def::<meta::DeleteOptions>, k);
        }
        for k in kinds_of("WatchEvent") {
            self.schemas.add_kind(model::def::<meta::WatchEvent<()>>, k);
        }
        self.schemas
            .add_kind(model::def::<meta::Status>, model::gvk("", "v1", "Status"));

        for resource in &gv.resources {
            self.add_resource(gv, resource, &prefix, &infix, &tag);
        }
    }

    fn add_resource(
        &mut self,
        gv: &GroupVersion,
        r: &ServedKind,
        prefix: &str,
        infix: &str,
        tag: &str,
    ) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let kind = r.kind;
        let gvk = model::gvk(gv.group, gv.version, kind);
        let schema = self.schemas.add_kind(r.schema, gvk);
        let list = {
            let list_gvk = model::gvk(gv.group, gv.version, r.list.kind);
            Some(self.schemas.add_list(r.schema, &r.list, list_gvk))
        };
        let status = self.meta(model::def::<meta::Status>);
        let delete_options = self.meta(model::def::<meta::DeleteOptions>);
        let patch = self.meta(model::def::<meta::Patch>);
        let watch_event = self.meta(model::def::<meta::WatchEvent<()>>);

        // Namespaced resources live under /namespaces/{namespace}; upstream
        // says so in the operation ids ("Namespaced").
        let (scope_path, scope_params, ns) = if r.namespaced {
            (
                "/namespaces/{namespace}",
                vec![params::NAMESPACE],
                "Namespaced",
            )
        } else {
            ("", vec![], "")
        };
        let collection = format!("{prefix}{scope_path}/{}", r.plural);
        let item_path = format!("{collection}/{{name}}");
        let with_pretty = |mut p: Vec<Param>| {
            p.push(params::PRETTY);
            p.sort_by_key(|p| p.name);
            p
        };
        let op = |method, id: String, description: String, action, params, request, responses| {
            Operation {
                method,
                id,
                description,
                action: Some(action),
                gvk: Some(gvk),
                tag: tag.to_owned(),
                params,
                request,
                responses,
            }
        };

        let mut collection_ops = Vec::new();
        if let (true, Some(list)) = (r.verbs.list, &list) {
            collection_ops.push(op(
                Method::Get,
                format!("list{infix}{ns}{kind}"),
                format!("list or watch objects of kind {kind}"),
                "list",
                params::list(),
                None,
                vec![(200, Body::Watchable(list.clone()))],
            ));
        }
        if r.verbs.create {
            let created = Body::Object(schema.clone());
            collection_ops.push(op(
                Method::Post,
                format!("create{infix}{ns}{kind}"),
                format!("create {} {kind}", article(kind)),
                "post",
                params::write(),
                Some(schema.clone()),
                vec![
                    (200, created.clone()),
                    (201, created.clone()),
                    (202, created),
                ],
            ));
        }
        if r.verbs.delete_collection {
            collection_ops.push(op(
                Method::Delete,
                format!("delete{infix}Collection{ns}{kind}"),
                format!("delete collection of {kind}"),
                "deletecollection",
                params::delete_collection(),
                Some(delete_options.clone()),
                vec![(200, Body::Object(status.clone()))],
            ));
        }
        if !collection_ops.is_empty() {
            let item = self.path(collection.clone(), with_pretty(scope_params.clone()));
            for o in collection_ops {
                item.ops.insert(o.method, o);
            }
        }

        if r.verbs.item {
            let object = Body::Object(schema.clone());
            let deleted = if r.delete_returns_object {
                Body::Object(schema.clone())
            } else {
                Body::Object(status.clone())
            };
            let ops = [
                op(
                    Method::Get,
                    format!("read{infix}{ns}{kind}"),
                    format!("read the specified {kind}"),
                    "get",
                    vec![],
                    None,
                    vec![(200, object.clone())],
                ),
                op(
                    Method::Put,
                    format!("replace{infix}{ns}{kind}"),
                    format!("replace the specified {kind}"),
                    "put",
                    params::write(),
                    Some(schema.clone()),
                    vec![(200, object.clone()), (201, object.clone())],
                ),
                op(
                    Method::Patch,
                    format!("patch{infix}{ns}{kind}"),
                    format!("partially update the specified {kind}"),
                    "patch",
                    params::patch(),
                    Some(patch.clone()),
                    vec![(200, object.clone()), (201, object)],
                ),
                op(
                    Method::Delete,
                    format!("delete{infix}{ns}{kind}"),
                    format!("delete {} {kind}", article(kind)),
                    "delete",
                    params::delete(),
                    Some(delete_options.clone()),
                    vec![(200, deleted.clone()), (202, deleted)],
                ),
            ];
            let mut path_params = scope_params.clone();
            path_params.push(params::name(kind));
            let item = self.path(item_path.clone(), with_pretty(path_params));
            for o in ops {
                item.ops.insert(o.method, o);
            }
        }

        if r.verbs.list {
            let watch = |id: String, description: String, action| {
                op(
                    Method::Get,
                    id,
                    description,
                    action,
                    vec![],
                    None,
                    vec![(200, Body::Watchable(watch_event.clone()))],
                )
            };
            let list_params = |extra: Vec<Param>| {
                let mut p = params::list();
                p.extend(extra);
                with_pretty(p)
            };
            let watch_list_desc = format!(
                "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
            );
            let watch_item_desc = format!(
                "watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."
            );
            let mut watch_paths = vec![(
                format!("{prefix}/watch{scope_path}/{}", r.plural),
                list_params(scope_params.clone()),
                watch(
                    format!("watch{infix}{ns}{kind}List"),
                    watch_list_desc.clone(),
                    "watchlist",
                ),
            )];
            if r.verbs.item {
                let mut p = scope_params.clone();
                p.push(params::name(kind));
                watch_paths.push((
                    format!("{prefix}/watch{scope_path}/{}/{{name}}", r.plural),
                    list_params(p),
                    watch(format!("watch{infix}{ns}{kind}"), watch_item_desc, "watch"),
                ));
            }
            if r.namespaced {
                // The same collection across all namespaces.
                if let Some(list) = &list {
                    watch_paths.push((
                        format!("{prefix}/{}", r.plural),
                        list_params(vec![]),
                        op(
                            Method::Get,
                            format!("list{infix}{kind}ForAllNamespaces"),
                            format!("list or watch objects of kind {kind}"),
                            "list",
                            vec![],
                            None,
                            vec![(200, Body::Watchable(list.clone()))],
                        ),
                    ));
                }
                watch_paths.push((
                    format!("{prefix}/watch/{}", r.plural),
                    list_params(vec![]),
                    watch(
                        format!("watch{infix}{kind}ListForAllNamespaces"),
                        watch_list_desc,
                        "watchlist",
                    ),
                ));
            }
            for (path, path_params, o) in watch_paths {
                self.path(path, path_params).ops.insert(o.method, o);
            }
        }

        for &sub in &r.subresources {
            self.add_subresource(
                r,
                sub,
                &item_path,
                &scope_params,
                infix,
                ns,
                tag,
                gvk,
                &schema,
            );
        }
    }

    // The parent resource's derived names are passed in rather than recomputed.
    #[allow(clippy::too_many_arguments)]
    fn add_subresource(
        &mut self,
        r: &ServedKind,
        sub: Subresource,
        item_path: &str,
        scope_params: &[Param],
        infix: &str,
        ns: &str,
        tag: &str,
        parent_gvk: Gvk,
        parent_schema: &str,
    ) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let kind = r.kind;
        let path = format!("{item_path}/{}", sub.path());
        let sub_camel = model::upper_first(sub.path());
        let make =
            |method, id: String, description: String, action, gvk, params, request, responses| {
                Operation {
                    method,
                    id,
                    description,
                    action: Some(action),
                    gvk: Some(gvk),
                    tag: tag.to_owned(),
                    params,
                    request,
                    responses,
                }
            };
        let path_params = |name_kind: &str, extra: Vec<Param>| {
            let mut p = scope_params.to_vec();
            p.push(params::name(name_kind));
            p.push(params::PRETTY);
            p.extend(extra);
            p.sort_by_key(|p| p.name);
            p
        };

        let (params_of_path, ops): (Vec<Param>, Vec<Operation>) = match sub {
            Subresource::Status | Subresource::EphemeralContainers | Subresource::Approval => {
                let patch = self.meta(model::def::<meta::Patch>);
                let object = Body::Object(parent_schema.to_owned());
                let what = sub.path();
                (
                    path_params(kind, vec![]),
                    vec![
                        make(
                            Method::Get,
                            format!("read{infix}{ns}{kind}{sub_camel}"),
                            format!("read {what} of the specified {kind}"),
                            "get",
                            parent_gvk,
                            vec![],
                            None,
                            vec![(200, object.clone())],
                        ),
                        make(
                            Method::Put,
                            format!("replace{infix}{ns}{kind}{sub_camel}"),
                            format!("replace {what} of the specified {kind}"),
                            "put",
                            parent_gvk,
                            params::write(),
                            Some(parent_schema.to_owned()),
                            vec![(200, object.clone()), (201, object.clone())],
                        ),
                        make(
                            Method::Patch,
                            format!("patch{infix}{ns}{kind}{sub_camel}"),
                            format!("partially update {what} of the specified {kind}"),
                            "patch",
                            parent_gvk,
                            params::patch(),
                            Some(patch),
                            vec![(200, object.clone()), (201, object)],
                        ),
                    ],
                )
            }
            Subresource::Scale => {
                let patch = self.meta(model::def::<meta::Patch>);
                let (schema_fn, scale_gvk) = model::SCALE;
                let scale = self.schemas.add_kind(schema_fn, scale_gvk);
                let object = Body::Object(scale.clone());
                (
                    path_params("Scale", vec![]),
                    vec![
                        make(
                            Method::Get,
                            format!("read{infix}{ns}{kind}Scale"),
                            format!("read scale of the specified {kind}"),
                            "get",
                            scale_gvk,
                            vec![],
                            None,
                            vec![(200, object.clone())],
                        ),
                        make(
                            Method::Put,
                            format!("replace{infix}{ns}{kind}Scale"),
                            format!("replace scale of the specified {kind}"),
                            "put",
                            scale_gvk,
                            params::write(),
                            Some(scale),
                            vec![(200, object.clone()), (201, object.clone())],
                        ),
                        make(
                            Method::Patch,
                            format!("patch{infix}{ns}{kind}Scale"),
                            format!("partially update scale of the specified {kind}"),
                            "patch",
                            scale_gvk,
                            params::patch(),
                            Some(patch),
                            vec![(200, object.clone()), (201, object)],
                        ),
                    ],
                )
            }
            Subresource::Finalize => {
                let object = Body::Object(parent_schema.to_owned());
                (
                    path_params(kind, vec![]),
                    vec![make(
                        Method::Put,
                        format!("replace{infix}{ns}{kind}{sub_camel}"),
                        format!("replace finalize of the specified {kind}"),
                        "put",
                        parent_gvk,
                        params::write(),
                        Some(parent_schema.to_owned()),
                        vec![(200, object.clone()), (201, object)],
                    )],
                )
            }
            Subresource::Binding | Subresource::Eviction | Subresource::Token => {
                let (schema_fn, body_gvk) = match sub {
                    Subresource::Binding => model::BINDING,
                    Subresource::Eviction => model::EVICTION,
                    _ => model::TOKEN_REQUEST,
                };
                let body = self.schemas.add_kind(schema_fn, body_gvk);
                let object = Body::Object(body.clone());
                (
                    path_params(body_gvk.kind, vec![]),
                    vec![make(
                        Method::Post,
                        format!("create{infix}{ns}{kind}{sub_camel}"),
                        format!("create {} of {} {kind}", sub.path(), article(kind)),
                        "post",
                        body_gvk,
                        params::write(),
                        Some(body),
                        vec![(200, object.clone()), (201, object.clone()), (202, object)],
                    )],
                )
            }
            Subresource::Log => (
                path_params(kind, params::log()),
                vec![make(
                    Method::Get,
                    format!("read{infix}{ns}{kind}Log"),
                    format!("read log of the specified {kind}"),
                    "get",
                    parent_gvk,
                    vec![],
                    None,
                    vec![(200, Body::Log)],
                )],
            ),
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                let options_kind = model::connect_options_kind(sub);
                let options_gvk = model::gvk("", "v1", options_kind);
                let extra = match sub {
                    Subresource::PortForward => params::port_forward(),
                    _ => params::streams(sub == Subresource::Exec),
                };
                let connect = |method: Method, verb: &str| {
                    make(
                        method,
                        format!("connect{infix}{verb}{ns}{kind}{sub_camel}"),
                        format!(
                            "connect {} requests to {} of {kind}",
                            verb.to_uppercase(),
                            sub.path()
                        ),
                        "connect",
                        options_gvk,
                        vec![],
                        None,
                        vec![(200, Body::Any)],
                    )
                };
                (
                    path_params(options_kind, extra),
                    vec![connect(Method::Get, "Get"), connect(Method::Post, "Post")],
                )
            }
        };
        let item = self.path(path, params_of_path);
        for o in ops {
            item.ops.insert(o.method, o);
        }
    }

    /// The finished document.
    pub(crate) fn render(self) -> Value {
        let dialect = self.schemas.dialect();
        let paths: Map<String, Value> = self
            .paths
            .iter()
            .map(|(path, item)| (path.clone(), render_path_item(item, dialect)))
            .collect();
        let definitions = Value::Object(self.schemas.finish());
        match dialect {
            Dialect::V2 => json!({
                "swagger": "2.0",
                "info": {"title": "Kubernetes", "version": "unversioned"},
                "paths": paths,
                "definitions": definitions,
                "securityDefinitions": {
                    "BearerToken": {
                        "description": "Bearer Token authentication",
                        "in": "header",
                        "name": "authorization",
                        "type": "apiKey",
                    }
                },
                "security": [{"BearerToken": []}],
            }),
            Dialect::V3 => json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": "unversioned"},
                "paths": paths,
                "components": {
                    "schemas": definitions,
                    "securitySchemes": {
                        "BearerToken": {
                            "description": "Bearer Token authentication",
                            "in": "header",
                            "name": "authorization",
                            "type": "apiKey",
                        }
                    },
                },
                "security": [{"BearerToken": []}],
            }),
        }
    }
}

fn render_param(p: &Param, dialect: Dialect) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), Value::from(p.description.as_ref()));
    out.insert(
        "in".into(),
        match p.location {
            In::Path => "path",
            In::Query => "query",
        }
        .into(),
    );
    out.insert("name".into(), p.name.into());
    if p.location == In::Path {
        out.insert("required".into(), true.into());
    }
    match dialect {
        Dialect::V2 => {
            out.insert("type".into(), p.ty.into());
            out.insert("uniqueItems".into(), true.into());
        }
        Dialect::V3 => {
            out.insert("schema".into(), json!({"type": p.ty, "uniqueItems": true}));
        }
    }
    Value::Object(out)
}

fn render_path_item(item: &PathItem, dialect: Dialect) -> Value {
    let mut out = Map::new();
    for (method, op) in &item.ops {
        out.insert(method.key().into(), render_operation(op, dialect));
    }
    if !item.params.is_empty() {
        let params = item
            .params
            .iter()
            .map(|p| render_param(p, dialect))
            .collect();
        out.insert("parameters".into(), Value::Array(params));
    }
    Value::Object(out)
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Unauthorized",
    }
}

fn render_operation(op: &Operation, dialect: Dialect) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), op.description.clone().into());
    out.insert("operationId".into(), op.id.clone().into());
    out.insert("tags".into(), json!([op.tag]));
    if let Some(action) = op.action {
        out.insert("x-kubernetes-action".into(), action.into());
    }
    if let Some(k) = op.gvk {
        out.insert(
            "x-kubernetes-group-version-kind".into(),
            json!({"group": k.group, "kind": k.kind, "version": k.version}),
        );
    }
    let request_media_types: &[&str] = if op.method == Method::Patch {
        PATCH_MEDIA_TYPES
    } else {
        &["*/*"]
    };

    let mut params: Vec<Value> = op.params.iter().map(|p| render_param(p, dialect)).collect();
    let mut responses = Map::new();
    let mut produces: &[&str] = OBJECT_MEDIA_TYPES;
    for (code, body) in &op.responses {
        let (schema, media_types) = match body {
            Body::Object(name) => (dialect.reference(name), OBJECT_MEDIA_TYPES),
            Body::Watchable(name) => (dialect.reference(name), WATCH_MEDIA_TYPES),
            Body::Log => (json!({"type": "string"}), LOG_MEDIA_TYPES),
            Body::Any => (json!({"type": "string"}), &["*/*"][..]),
        };
        produces = media_types;
        let response = match dialect {
            Dialect::V2 => json!({"description": status_text(*code), "schema": schema}),
            Dialect::V3 => {
                let content: Map<String, Value> = media_types
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({"schema": schema})))
                    .collect();
                json!({"description": status_text(*code), "content": content})
            }
        };
        responses.insert(code.to_string(), response);
    }
    responses.insert("401".into(), json!({"description": status_text(401)}));
    out.insert("responses".into(), Value::Object(responses));

    match dialect {
        Dialect::V2 => {
            if let Some(name) = &op.request {
                params.insert(
                    0,
                    json!({
                        "in": "body",
                        "name": "body",
                        "required": op.method != Method::Delete,
                        "schema": dialect.reference(name),
                    }),
                );
            }
            out.insert("consumes".into(), json!(request_media_types));
            out.insert("produces".into(), json!(produces));
            out.insert("schemes".into(), json!(["https"]));
        }
        Dialect::V3 => {
            if let Some(name) = &op.request {
                let content: Map<String, Value> = request_media_types
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({"schema": dialect.reference(name)})))
                    .collect();
                let mut body = Map::new();
                body.insert("content".into(), Value::Object(content));
                // A DELETE may come without options.
                if op.method != Method::Delete {
                    body.insert("required".into(), true.into());
                }
                out.insert("requestBody".into(), Value::Object(body));
            }
        }
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    Value::Object(out)
}
