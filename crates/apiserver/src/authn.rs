//! Who a request comes from: the [`UserInfo`] authentication ends with (upstream's
//! `user.Info`), and the static bearer tokens this server made for itself and its own
//! components (upstream's `--token-auth-file`, one line per token):
//!
//! | file in `DIR/pki/` | user | groups |
//! |---|---|---|
//! | `admin.token` (in `kubeconfig.yaml`) | `system:admin` | `system:masters` |
//! | `kube-controller-manager.token` | `system:kube-controller-manager` | |
//! | `kube-scheduler.token` | `system:kube-scheduler` | |
//!
//! Every authenticated user is also in `system:authenticated`. The other ways in, in the
//! order they are tried (upstream's union authenticator puts x509 before tokens):
//!
//! - a client certificate the TLS handshake verified against the cluster CA
//!   ([`user_from_certificate`], upstream's x509 authenticator): user = subject CN,
//!   groups = subject O values (how agents authenticate after joining);
//! - a bootstrap token (`crate::bootstraptoken`): `system:bootstrap:<id>`;
//! - a service-account token (`serviceaccount::authn`):
//!   `system:serviceaccount:<namespace>:<name>`.
//!
//! What a user may do is `crate::authz`'s (bootstrap users only, until RBAC).

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group whose members may do anything (upstream's cluster-admin binding).
pub const MASTERS: &str = "system:masters";
pub const ADMIN_USER: &str = "system:admin";
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
pub const SCHEDULER_USER: &str = "system:kube-scheduler";

impl UserInfo {
    /// A user in `groups` and, as every authenticated user, `system:authenticated`.
    pub fn new(name: &str, uid: &str, groups: &[&str]) -> UserInfo {
        let mut all: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        all.push(AUTHENTICATED.into());
        UserInfo {
            name: name.into(),
            uid: uid.into(),
            groups: all,
        }
    }

    /// A service account's user, as upstream's service-account authenticator names it.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> UserInfo {
        UserInfo::new(
            &format!("system:serviceaccount:{namespace}:{name}"),
            uid,
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
            ],
        )
    }
}

/// The user a verified client certificate (DER) stands for: CN and O of its subject, as
/// upstream's `CommonNameUserConversion`; None when it names no CN.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups: Vec<&str> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    Some(UserInfo::new(&name, "", &groups))
}

/// The user a connection's verified client certificate stands for, carried from the TLS
/// accept to the request (a request extension).
#[derive(Debug, Clone)]
pub struct CertificateUser(pub UserInfo);

/// Bearer tokens that stand for a fixed user.
#[derive(Default)]
pub struct StaticTokens {
    entries: Vec<(String, UserInfo)>,
}

impl StaticTokens {
    /// The server's own tokens: the admin's and its components'.
    pub fn new(admin: &str, controller_manager: &str, scheduler: &str) -> StaticTokens {
        StaticTokens {
            entries: vec![
                (admin.into(), UserInfo::new(ADMIN_USER, "", &[MASTERS])),
                (
                    controller_manager.into(),
                    UserInfo::new(CONTROLLER_MANAGER_USER, "", &[]),
                ),
                (scheduler.into(), UserInfo::new(SCHEDULER_USER, "", &[])),
            ],
        }
    }

    /// The user `token` stands for. Every entry is compared in constant time, so the time
    /// taken tells nothing about which token came close.
    pub fn authenticate(&self, token: &str) -> Option<&UserInfo> {
        let mut found = None;
        for (known, user) in &self.entries {
            if constant_time_eq(token.as_bytes(), known.as_bytes()) && !known.is_empty() {
                found = Some(user);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token and the user (name, groups) it stands for.
    type Case = (
        &'static str,
        Option<(&'static str, &'static [&'static str])>,
    );

    #[test]
    fn each_token_is_its_own_user() {
        let tokens = StaticTokens::new("admin-t", "cm-t", "sched-t");
        let cases: &[Case] = &[
            (
                "admin-t",
                Some(("system:admin", &["system:masters", "system:authenticated"])),
            ),
            (
                "cm-t",
                Some(("system:kube-controller-manager", &["system:authenticated"])),
            ),
            (
                "sched-t",
                Some(("system:kube-scheduler", &["system:authenticated"])),
            ),
            ("admin-", None),
            ("admin-tt", None),
            ("", None),
        ];
        for (token, want) in cases {
            let got = tokens
                .authenticate(token)
                .map(|u| (u.name.as_str(), u.groups.clone()));
            let want = want.map(|(n, g)| (n, g.iter().map(|s| s.to_string()).collect()));
            assert_eq!(got, want, "token {token:?}");
        }
    }

    #[test]
    fn an_empty_token_file_authenticates_nobody() {
        let tokens = StaticTokens::new("", "cm", "");
        assert_eq!(tokens.authenticate(""), None);
    }

    #[test]
    fn certificate_subject_is_the_user() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let cert = params.self_signed(&key).unwrap();
        let u = user_from_certificate(cert.der()).unwrap();
        assert_eq!(u.name, "system:node:n1");
        assert_eq!(u.groups, ["system:nodes", "system:authenticated"]);
        assert_eq!(user_from_certificate(b"not a certificate"), None);
    }

    #[test]
    fn service_accounts_are_named_as_upstream() {
        let u = UserInfo::service_account("team", "robot", "u-1");
        assert_eq!(u.name, "system:serviceaccount:team:robot");
        assert_eq!(u.uid, "u-1");
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
    }
}
