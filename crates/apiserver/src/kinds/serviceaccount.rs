//! core/v1 ServiceAccount, with the `token` subresource (TokenRequest, `serviceaccount/`).

use k8s_openapi::api::core::v1::ServiceAccount;

use crate::filter;
use crate::handlers::delete::{self, DeleteStrategy};
use crate::registry::{Resource, Subresource, SubresourceKind, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table;

pub static STRATEGY: TypedStrategy<ServiceAccount> = TypedStrategy::new(
    api::validate_service_account,
    api::validate_service_account_update,
);

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    subresources: &[Subresource {
        name: "token",
        kind: "TokenRequest",
        group_version: Some(("authentication.k8s.io", "v1")),
        verbs: &["create"],
        handler: SubresourceKind::Token,
    }],
    storage: "serviceaccounts",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<ServiceAccount>,
    list_schema: super::list(
        "ServiceAccountList",
        "ServiceAccountList is a list of ServiceAccount objects",
        "List of ServiceAccounts. More info: https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/",
        super::LIST_METADATA,
    ),
    printer: table::DEFAULT,
    fields: filter::NAMESPACED_META,
    // Upstream's service account storage sets ReturnDeletedObject.
    delete: DeleteStrategy {
        returns_object: true,
        ..delete::PLAIN
    },
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};
