use super::*;

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const SUB2: &str = "00000000-0000-0000-0000-000000000002";
const ALICE: &str = "11111111-1111-1111-1111-111111111111";
const BOB: &str = "22222222-2222-2222-2222-222222222222";

fn rg(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{name}")
}

fn registry(group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

fn one(oid: &str, role: &str, scope: &str) -> RbacConfig {
    RbacConfig::from_json(
        &serde_json::json!({
            "roleAssignments": [{"principalId": oid, "roleDefinitionName": role, "scope": scope}]
        })
        .to_string(),
    )
    .expect("valid config")
}

fn err(json: serde_json::Value) -> String {
    crate::error_chain(&RbacConfig::from_json(&json.to_string()).expect_err("invalid config"))
}

fn alice() -> Principal {
    Principal::new(ALICE, ALICE)
}

// ---- built-in roles

#[test]
fn contributor_can_import_and_read_but_not_assign_roles() {
    let cfg = one(ALICE, "Contributor", &rg("rg"));
    let reg = registry("rg", "target");
    assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(cfg.is_allowed(ALICE, REGISTRY_READ, &reg));
    assert!(cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
    assert!(cfg.is_allowed(ALICE, REGISTRY_DELETE, &reg));
    assert!(!cfg.is_allowed(ALICE, "Microsoft.Authorization/roleAssignments/write", &reg));
    assert!(!cfg.is_allowed(
        ALICE,
        "Microsoft.Authorization/roleAssignments/delete",
        &reg
    ));
    assert!(cfg.is_allowed(ALICE, "Microsoft.Authorization/roleAssignments/read", &reg));
    assert!(!cfg.is_allowed(ALICE, "Microsoft.Compute/galleries/share/action", &reg));
    assert!(check_import(&cfg, &alice(), &reg, Some(&registry("rg", "source"))).is_ok());
}

#[test]
fn owner_can_do_everything() {
    let cfg = one(ALICE, "Owner", "/");
    for action in [
        IMPORT_ACTION,
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization/elevateAccess/Action",
    ] {
        assert!(
            cfg.is_allowed(ALICE, action, &registry("rg", "target")),
            "{action}"
        );
    }
}

#[test]
fn reader_reads_but_cannot_import() {
    let cfg = one(ALICE, "Reader", &format!("/subscriptions/{SUB}"));
    let reg = registry("rg", "target");
    assert!(cfg.is_allowed(ALICE, REGISTRY_READ, &reg));
    assert!(cfg.is_allowed(
        ALICE,
        "Microsoft.ContainerRegistry/registries/pull/read",
        &reg
    ));
    assert!(!cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(!cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
    let denial = check_import(&cfg, &alice(), &reg, None).expect_err("denied");
    assert_eq!(denial.code, AUTHORIZATION_FAILED);
    assert_eq!(denial.status(), 403);
}

#[test]
fn acr_push_and_pull_cannot_import_or_read_the_resource() {
    for role in ["AcrPush", "AcrPull", "AcrDelete"] {
        let cfg = one(ALICE, role, &registry("rg", "target"));
        let reg = registry("rg", "target");
        assert!(!cfg.is_allowed(ALICE, IMPORT_ACTION, &reg), "{role}");
        assert!(!cfg.is_allowed(ALICE, REGISTRY_READ, &reg), "{role}");
    }
    let cfg = one(ALICE, "AcrPush", &registry("rg", "target"));
    assert!(cfg.is_allowed(
        ALICE,
        "Microsoft.ContainerRegistry/registries/push/write",
        &registry("rg", "target")
    ));
}

#[test]
fn acr_specific_built_ins() {
    let reg = registry("rg", "target");
    let importer = one(
        ALICE,
        "Container Registry Data Importer and Data Reader",
        &reg,
    );
    assert!(importer.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(importer.is_allowed(ALICE, REGISTRY_READ, &reg));
    assert!(!importer.is_allowed(ALICE, REGISTRY_WRITE, &reg));

    let admin = one(
        ALICE,
        "container registry contributor and data access configuration administrator",
        &reg,
    );
    assert!(admin.is_allowed(ALICE, REGISTRY_WRITE, &reg));
    assert!(admin.is_allowed(ALICE, REGISTRY_DELETE, &reg));
    assert!(admin.is_allowed(ALICE, "Microsoft.Resources/deployments/write", &reg));
    assert!(!admin.is_allowed(ALICE, IMPORT_ACTION, &reg));
}

#[test]
fn built_in_lookup_by_name_or_id() {
    assert_eq!(built_in_role("acrpush").map(|r| r.name), Some("AcrPush"));
    assert_eq!(
        built_in_role("B24988AC-6180-42A0-AB88-20F7382DD24C").map(|r| r.name),
        Some("Contributor")
    );
    assert_eq!(
        built_in_role(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
        ))
        .map(|r| r.name),
        Some("Reader")
    );
    assert!(built_in_role("Superuser").is_none());
    // Every built-in has a well-formed GUID and valid patterns.
    for r in BUILT_IN_ROLES {
        assert_eq!(
            parse_role_definition_id(r.id).as_deref(),
            Some(r.id),
            "{}",
            r.name
        );
        for p in r.actions.iter().chain(r.not_actions) {
            assert!(check_pattern(p).is_ok(), "{p}");
        }
    }
}

#[test]
fn assignment_by_role_definition_id() {
    let cfg = RbacConfig::from_json(
        &serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "scope": rg("rg"),
             "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c")},
            {"principalId": BOB, "scope": rg("rg"),
             "roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "roleDefinitionName": "reader",
             "principalType": "User", "id": "/whatever"}
        ]})
        .to_string(),
    )
    .expect("valid");
    let reg = registry("rg", "target");
    assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(cfg.is_allowed(BOB, REGISTRY_READ, &reg));
    assert!(!cfg.is_allowed(BOB, IMPORT_ACTION, &reg));
}

// ---- custom roles, wildcards, notActions

#[test]
fn custom_role_grants_exactly_its_actions() {
    let cfg = RbacConfig::from_json(
        &serde_json::json!({
            "roleAssignments": [{"principalId": ALICE, "roleDefinitionName": "importer", "scope": rg("rg")}],
            "roleDefinitions": [{"roleName": "Importer",
                "actions": [IMPORT_ACTION, REGISTRY_READ], "notActions": []}]
        })
        .to_string(),
    )
    .expect("valid");
    let reg = registry("rg", "target");
    assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(cfg.is_allowed(ALICE, REGISTRY_READ, &reg));
    assert!(!cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
    assert!(check_import(&cfg, &alice(), &reg, Some(&registry("rg", "src"))).is_ok());
    assert!(cfg.role("IMPORTER").is_some_and(|r| !r.built_in));
}

#[test]
fn custom_role_with_id_and_permissions_blocks() {
    let cfg = RbacConfig::from_json(
        &serde_json::json!({
            "roleAssignments": [{"principalId": ALICE, "scope": "/",
                "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}],
            "roleDefinitions": [{"roleName": "Blocks", "id": "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
                "permissions": [
                    {"actions": ["Microsoft.ContainerRegistry/*"], "notActions": ["Microsoft.ContainerRegistry/registries/importImage/action"]},
                    {"actions": ["Microsoft.ContainerRegistry/registries/*/action"], "notActions": []}
                ]}]
        })
        .to_string(),
    )
    .expect("valid");
    let reg = registry("rg", "target");
    // notActions of the first block do not remove what the second block grants.
    assert!(cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
    assert!(!cfg.is_allowed(ALICE, "Microsoft.Network/virtualNetworks/read", &reg));
}

#[test]
fn not_actions_subtract_within_a_role_but_other_assignments_still_grant() {
    let cfg = RbacConfig::from_json(
        &serde_json::json!({
            "roleAssignments": [
                {"principalId": ALICE, "roleDefinitionName": "NoImport", "scope": rg("rg")},
                {"principalId": BOB, "roleDefinitionName": "NoImport", "scope": rg("rg")},
                {"principalId": BOB, "roleDefinitionName": "Contributor", "scope": registry("rg", "target")}
            ],
            "roleDefinitions": [{"roleName": "NoImport", "actions": ["*"],
                "notActions": ["Microsoft.ContainerRegistry/registries/*/action"]}]
        })
        .to_string(),
    )
    .expect("valid");
    let reg = registry("rg", "target");
    assert!(!cfg.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(cfg.is_allowed(ALICE, REGISTRY_WRITE, &reg));
    assert!(cfg.is_allowed(BOB, IMPORT_ACTION, &reg));
    assert!(!cfg.is_allowed(BOB, IMPORT_ACTION, &registry("rg", "other")));
}

#[test]
fn wildcards() {
    let yes = [
        ("*", IMPORT_ACTION),
        ("*/read", REGISTRY_READ),
        ("*/read", "Microsoft.ContainerRegistry/registries/pull/read"),
        ("Microsoft.ContainerRegistry/*", IMPORT_ACTION),
        (
            "Microsoft.ContainerRegistry/registries/*/action",
            IMPORT_ACTION,
        ),
        (
            "Microsoft.ContainerRegistry/registries/import*",
            IMPORT_ACTION,
        ),
        (
            "microsoft.containerregistry/REGISTRIES/importimage/ACTION",
            IMPORT_ACTION,
        ),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/roleAssignments/delete",
        ),
        ("Microsoft.Container*/registries/read", REGISTRY_READ),
        ("*read", REGISTRY_READ),
        ("**", "x"),
    ];
    for (p, a) in yes {
        assert!(action_matches(p, a), "{p} should match {a}");
    }
    let no = [
        ("*/read", REGISTRY_WRITE),
        ("*/read", IMPORT_ACTION),
        (
            "Microsoft.ContainerRegistry/*",
            "Microsoft.Compute/virtualMachines/read",
        ),
        (
            "Microsoft.ContainerRegistry/registries/*/action",
            REGISTRY_READ,
        ),
        ("Microsoft.ContainerRegistry/registries", REGISTRY_READ),
        (
            REGISTRY_READ,
            "Microsoft.ContainerRegistry/registries/read/more",
        ),
        (
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/rea",
        ),
        ("", "x"),
    ];
    for (p, a) in no {
        assert!(!action_matches(p, a), "{p} should not match {a}");
    }
}

// ---- scopes

#[test]
fn scope_inheritance() {
    let reg = registry("rg", "target");
    let sub = one(ALICE, "Contributor", &format!("/subscriptions/{SUB}"));
    assert!(sub.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(sub.is_allowed(ALICE, IMPORT_ACTION, &format!("/subscriptions/{SUB}")));
    assert!(!sub.is_allowed(
        ALICE,
        IMPORT_ACTION,
        &format!("/subscriptions/{SUB2}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/target")
    ));

    let group = one(ALICE, "Contributor", &rg("rg"));
    assert!(group.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(!group.is_allowed(ALICE, IMPORT_ACTION, &registry("rg2", "target")));
    // Whole segments: 'rg' is not a prefix of 'rg-other'.
    assert!(!group.is_allowed(ALICE, IMPORT_ACTION, &registry("rg-other", "target")));
    // An assignment below the scope asked about does not grant it.
    assert!(!group.is_allowed(ALICE, IMPORT_ACTION, &format!("/subscriptions/{SUB}")));

    let resource = one(ALICE, "Contributor", &reg);
    assert!(resource.is_allowed(ALICE, IMPORT_ACTION, &reg));
    assert!(resource.is_allowed(ALICE, IMPORT_ACTION, &format!("{reg}/")));
    assert!(!resource.is_allowed(ALICE, IMPORT_ACTION, &registry("rg", "targetx")));
    assert!(!resource.is_allowed(ALICE, IMPORT_ACTION, &rg("rg")));

    let root = one(ALICE, "Reader", "/");
    assert!(root.is_allowed(ALICE, REGISTRY_READ, &reg));
    assert!(root.is_allowed(ALICE, REGISTRY_READ, "/"));
}

#[test]
fn case_insensitivity() {
    let cfg = one(
        &ALICE.to_uppercase(),
        "cOnTrIbUtOr",
        &format!("/SUBSCRIPTIONS/{}/RESOURCEGROUPS/My-RG", SUB.to_uppercase()),
    );
    let reg = format!(
        "/subscriptions/{SUB}/resourcegroups/my-rg/providers/microsoft.containerregistry/registries/TARGET"
    );
    assert!(cfg.is_allowed(ALICE, &IMPORT_ACTION.to_uppercase(), &reg));
    assert!(cfg.is_allowed(&ALICE.to_uppercase(), IMPORT_ACTION, &reg));
    assert!(!cfg.is_allowed(BOB, IMPORT_ACTION, &reg));
}

#[test]
fn scope_parsing() {
    for ok in [
        "/".to_owned(),
        format!("/subscriptions/{SUB}"),
        format!("/subscriptions/{SUB}/"),
        rg("my_rg.(1)"),
        registry("rg", "target"),
        format!("{}/replications/westus", registry("rg", "target")),
    ] {
        assert!(Scope::parse(&ok).is_ok(), "{ok}");
    }
    for bad in [
        String::new(),
        "subscriptions".to_owned(),
        "/subscriptions".to_owned(),
        "/subscriptions/not-a-guid".to_owned(),
        format!("//subscriptions/{SUB}"),
        format!("/subscriptions/{SUB}/resourceGroups"),
        format!("/subscriptions/{SUB}/groups/rg"),
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers"),
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries"),
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/ContainerRegistry/registries/x"),
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/x/replications"),
        "/providers/Microsoft.Management/managementGroups/mg".to_owned(),
    ] {
        assert!(Scope::parse(&bad).is_err(), "{bad:?}");
    }
    let s = Scope::parse(&rg("RG")).expect("valid");
    assert_eq!(s.as_str(), rg("RG"));
    assert_eq!(s.to_string(), rg("RG"));
}

// ---- configuration errors

#[test]
fn config_errors_name_the_entry() {
    let e = err(serde_json::json!({"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"},
        {"principalId": ALICE, "roleDefinitionName": "AcrPusher", "scope": "/"}
    ]}));
    assert!(
        e.starts_with("RBAC configuration: roleAssignments[1].roleDefinitionName: unknown role 'AcrPusher'; known roles: Owner, Contributor, Reader, AcrPull, AcrPush"),
        "{e}"
    );

    let e = err(serde_json::json!({"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"},
        {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"},
        {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/subscriptions/nope"}
    ]}));
    assert_eq!(
        e,
        "RBAC configuration: roleAssignments[2].scope: scope '/subscriptions/nope': subscription id 'nope' is not a GUID"
    );

    let e = err(serde_json::json!({"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "subscriptions/x"}
    ]}));
    assert!(e.starts_with("RBAC configuration: roleAssignments[0].scope: scope 'subscriptions/x' does not start with '/'"), "{e}");

    let e = err(serde_json::json!({"roleAssignments": [{"principalId": ALICE, "scope": "/"}]}));
    assert_eq!(
        e,
        "RBAC configuration: roleAssignments[0].roleDefinitionName: either roleDefinitionName or roleDefinitionId is required"
    );

    let e = err(serde_json::json!({"roleAssignments": [
        {"principalId": " ", "roleDefinitionName": "Reader", "scope": "/"}]}));
    assert!(e.contains("roleAssignments[0].principalId"), "{e}");

    let e = err(serde_json::json!({"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionId": "not-a-guid", "scope": "/"}]}));
    assert!(
        e.contains("roleAssignments[0].roleDefinitionId: 'not-a-guid' is neither a GUID"),
        "{e}"
    );

    let e = err(serde_json::json!({"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "scope": "/"}]}));
    assert!(
        e.contains("no built-in or custom role has the id 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee'"),
        "{e}"
    );

    let e = err(serde_json::json!({"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionName": "Owner",
         "roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "scope": "/"}]}));
    assert!(
        e.contains(
            "roleDefinitionName names role 'Owner' but roleDefinitionId names role 'Reader'"
        ),
        "{e}"
    );
}

#[test]
fn custom_role_errors() {
    let e = err(serde_json::json!({"roleDefinitions": [{"roleName": "reader", "actions": ["*"]}]}));
    assert_eq!(
        e,
        "RBAC configuration: roleDefinitions[0].roleName: role name 'reader' is a built-in role; custom role names must be unique"
    );
    let e = err(serde_json::json!({"roleDefinitions": [
        {"roleName": "X", "actions": ["*"]}, {"roleName": "x", "actions": ["*"]}]}));
    assert!(
        e.contains("roleDefinitions[1].roleName: role name 'x' is already defined"),
        "{e}"
    );
    let e = err(serde_json::json!({"roleDefinitions": [{"roleName": "X", "notActions": ["*"]}]}));
    assert_eq!(
        e,
        "RBAC configuration: roleDefinitions[0].actions: role 'X' grants no action"
    );
    let e = err(serde_json::json!({"roleDefinitions": [{"roleName": "X", "actions": ["a b"]}]}));
    assert!(
        e.contains(
            "roleDefinitions[0].actions[0]: action pattern 'a b' contains the character ' '"
        ),
        "{e}"
    );
    let e = err(serde_json::json!({"roleDefinitions": [{"roleName": "X",
        "permissions": [{"actions": ["*"], "notActions": [""]}]}]}));
    assert!(
        e.contains("roleDefinitions[0].permissions[0].notActions[0]: an action pattern is empty"),
        "{e}"
    );
    let e = err(
        serde_json::json!({"roleDefinitions": [{"roleName": "X", "actions": ["*"],
        "id": "b24988ac-6180-42a0-ab88-20f7382dd24c"}]}),
    );
    assert!(e.contains("roleDefinitions[0].id: role id 'b24988ac-6180-42a0-ab88-20f7382dd24c' is already used by role 'Contributor'"), "{e}");
    let e = err(serde_json::json!({"roleDefinitions": [{"roleName": " ", "actions": ["*"]}]}));
    assert!(
        e.contains("roleDefinitions[0].roleName: the role name is empty"),
        "{e}"
    );
}

#[test]
fn json_errors_and_empty_config() {
    let e = RbacConfig::from_json("{").expect_err("not json");
    assert_eq!(e.to_string(), "RBAC configuration is not valid");
    let e = crate::error_chain(&e);
    assert!(e.starts_with("RBAC configuration is not valid: EOF"), "{e}");
    let e = err(
        serde_json::json!({"roleAssignments": [{"roleDefinitionName": "Reader", "scope": "/"}]}),
    );
    assert!(e.contains("missing field `principalId`"), "{e}");
    let empty = RbacConfig::from_json("{}").expect("valid");
    assert!(empty.assignments().is_empty());
    assert_eq!(empty.roles().len(), BUILT_IN_ROLES.len());
    assert!(!empty.is_allowed(ALICE, REGISTRY_READ, "/"));
    assert_eq!(empty, RbacConfig::default());
}

#[test]
fn deserializes_with_validation() {
    #[derive(Deserialize)]
    struct Outer {
        rbac: RbacConfig,
    }
    let ok: Outer = serde_json::from_value(serde_json::json!({"rbac": {"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": "/"}]}}))
    .expect("valid");
    assert!(ok.rbac.is_allowed(ALICE, REGISTRY_READ, "/"));
    let bad = serde_json::from_value::<Outer>(serde_json::json!({"rbac": {"roleAssignments": [
        {"principalId": ALICE, "roleDefinitionName": "Nope", "scope": "/"}]}}));
    assert!(bad.is_err());
}

// ---- messages

#[test]
fn authorization_failed_text() {
    let d = authorization_failed(
        "c1",
        "o1",
        IMPORT_ACTION,
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
    );
    assert_eq!(d.code, "AuthorizationFailed");
    assert_eq!(
        d.message,
        "The client 'c1' with object id 'o1' does not have authorization to perform action 'Microsoft.ContainerRegistry/registries/importImage/action' over scope '/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r' or the scope is invalid. If access was recently granted, please refresh your credentials."
    );
}

#[test]
fn linked_authorization_failed_text() {
    let d = linked_authorization_failed("c1", "o1", IMPORT_ACTION, "/t", REGISTRY_READ, "/s");
    assert_eq!(d.code, "LinkedAuthorizationFailed");
    assert_eq!(
        d.message,
        "The client 'c1' with object id 'o1' has permission to perform action 'Microsoft.ContainerRegistry/registries/importImage/action' on scope '/t'; however, it does not have permission to perform action(s) 'Microsoft.ContainerRegistry/registries/read' on the linked scope(s) '/s' (respectively) or the linked scope(s) are invalid."
    );
    assert_eq!(d.status(), 403);
    assert!(d
        .to_string()
        .starts_with("LinkedAuthorizationFailed: The client 'c1'"));
}

#[test]
fn check_import_target_then_source() {
    let target = registry("rg", "target");
    let source = registry("other", "source");
    // Target only: the source is a linked scope without read.
    let cfg = one(ALICE, "Contributor", &target);
    assert!(check_import(&cfg, &alice(), &target, None).is_ok());
    let d = check_import(&cfg, &alice(), &target, Some(&source)).expect_err("linked");
    assert_eq!(d.code, LINKED_AUTHORIZATION_FAILED);
    assert_eq!(
        d.message,
        format!("The client '{ALICE}' with object id '{ALICE}' has permission to perform action '{IMPORT_ACTION}' on scope '{target}'; however, it does not have permission to perform action(s) '{REGISTRY_READ}' on the linked scope(s) '{source}' (respectively) or the linked scope(s) are invalid.")
    );

    // Reader on the source is enough for the linked check.
    let cfg = RbacConfig::from_json(
        &serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Contributor", "scope": target},
            {"principalId": ALICE, "roleDefinitionName": "Reader", "scope": source}
        ]})
        .to_string(),
    )
    .expect("valid");
    assert!(check_import(&cfg, &alice(), &target, Some(&source)).is_ok());

    // AcrPull on the source is not.
    let cfg = RbacConfig::from_json(
        &serde_json::json!({"roleAssignments": [
            {"principalId": ALICE, "roleDefinitionName": "Contributor", "scope": target},
            {"principalId": ALICE, "roleDefinitionName": "AcrPull", "scope": source}
        ]})
        .to_string(),
    )
    .expect("valid");
    assert!(check_import(&cfg, &alice(), &target, Some(&source)).is_err());

    // The target is checked first, with the plain AuthorizationFailed text.
    let cfg = one(ALICE, "Reader", "/");
    let d = check_import(
        &cfg,
        &Principal::new(ALICE, "user@contoso.com"),
        &target,
        Some(&source),
    )
    .expect_err("denied");
    assert_eq!(d.code, AUTHORIZATION_FAILED);
    assert_eq!(
        d.message,
        format!("The client 'user@contoso.com' with object id '{ALICE}' does not have authorization to perform action '{IMPORT_ACTION}' over scope '{target}' or the scope is invalid. If access was recently granted, please refresh your credentials.")
    );
}

#[test]
fn check_single_action() {
    let cfg = one(ALICE, "Reader", &rg("rg"));
    assert!(check(&cfg, &alice(), REGISTRY_READ, &registry("rg", "r")).is_ok());
    let d = check(&cfg, &alice(), REGISTRY_DELETE, &registry("rg", "r")).expect_err("denied");
    assert!(d
        .message
        .contains(&format!("perform action '{REGISTRY_DELETE}' over scope")));
}

// ---- tokens

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn jwt(payload: serde_json::Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(&serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(&payload)
    )
}

fn sp_payload() -> serde_json::Value {
    serde_json::json!({
        "aud": "https://management.azure.com/",
        "iss": "https://sts.windows.net/t/",
        "iat": 1_700_000_000, "nbf": 1_700_000_000, "exp": 1_700_003_600,
        "appid": "app-id", "appidacr": "1", "idp": "https://sts.windows.net/t/",
        "oid": ALICE, "sub": ALICE, "tid": "tenant-id", "ver": "1.0"
    })
}

#[test]
fn decodes_a_service_principal_token() {
    let claims = decode_jwt_claims(&jwt(sp_payload())).expect("valid");
    assert_eq!(claims.oid, ALICE);
    assert_eq!(claims.tid, "tenant-id");
    assert_eq!(claims.aud, "https://management.azure.com/");
    assert_eq!(claims.exp, 1_700_003_600);
    assert_eq!(claims.application_id(), Some("app-id"));
    // ARM names a service principal by its object id.
    assert_eq!(claims.client(), ALICE);
    assert_eq!(
        Principal::from_claims(&claims),
        Principal::new(ALICE, ALICE)
    );
    assert!(claims.check_arm_audience().is_ok());
    assert!(!claims.is_expired_at(1_700_003_599));
    assert!(claims.is_expired_at(1_700_003_600));
}

#[test]
fn user_tokens_name_the_user() {
    let mut p = sp_payload();
    p["upn"] = "alice@contoso.com".into();
    p["unique_name"] = "alice@contoso.com".into();
    let claims = decode_jwt_claims(&jwt(p)).expect("valid");
    assert_eq!(claims.client(), "alice@contoso.com");

    let mut p = sp_payload();
    p["unique_name"] = "live.com#guest@example.com".into();
    p.as_object_mut().map(|o| o.remove("appid"));
    p["azp"] = "v2-app".into();
    let claims = decode_jwt_claims(&format!("  {}\n", jwt(p))).expect("valid");
    assert_eq!(claims.client(), "live.com#guest@example.com");
    assert_eq!(claims.application_id(), Some("v2-app"));
}

#[test]
fn padded_base64_and_empty_signature_are_accepted() {
    let header = base64::engine::general_purpose::URL_SAFE.encode(r#"{"alg":"none"}"#);
    let payload = base64::engine::general_purpose::URL_SAFE.encode(sp_payload().to_string());
    assert!(decode_jwt_claims(&format!("{header}.{payload}.")).is_ok());
}

#[test]
fn malformed_tokens() {
    assert_eq!(decode_jwt_claims(""), Err(TokenError::Segments(1)));
    let two = jwt(sp_payload())
        .rsplit_once('.')
        .map(|(a, _)| a.to_owned())
        .unwrap_or_default();
    assert_eq!(decode_jwt_claims(&two), Err(TokenError::Segments(2)));
    assert_eq!(decode_jwt_claims("a.b.c.d.e"), Err(TokenError::Segments(5)));
    let header = b64(&serde_json::json!({"alg": "RS256"}));
    assert_eq!(
        decode_jwt_claims(&format!("{header}.!!!not-base64!!!.sig")),
        Err(TokenError::Base64("payload"))
    );
    assert_eq!(
        decode_jwt_claims(&format!("%%%.{}.sig", b64(&sp_payload()))),
        Err(TokenError::Base64("header"))
    );
    let not_json = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("hello");
    assert!(matches!(
        decode_jwt_claims(&format!("{header}.{not_json}.sig")),
        Err(TokenError::Json {
            part: "payload",
            ..
        })
    ));
    let array = b64(&serde_json::json!([1, 2]));
    assert!(matches!(
        decode_jwt_claims(&format!("{header}.{array}.sig")),
        Err(TokenError::Json {
            part: "payload",
            ..
        })
    ));
    let mut p = sp_payload();
    p["exp"] = "tomorrow".into();
    assert!(matches!(
        decode_jwt_claims(&jwt(p)),
        Err(TokenError::InvalidClaims(_))
    ));
}

#[test]
fn missing_claims() {
    for claim in ["oid", "tid", "aud", "exp"] {
        let mut p = sp_payload();
        p.as_object_mut().map(|o| o.remove(claim));
        assert_eq!(
            decode_jwt_claims(&jwt(p)),
            Err(TokenError::MissingClaim(claim)),
            "{claim}"
        );
    }
    let mut p = sp_payload();
    p["oid"] = "".into();
    let e = decode_jwt_claims(&jwt(p)).expect_err("empty oid");
    assert_eq!(e, TokenError::MissingClaim("oid"));
    assert_eq!(e.arm_code(), "InvalidAuthenticationToken");
    assert_eq!(
        e.arm_message(),
        "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal is properly created in the tenant."
    );
    assert_eq!(TokenError::STATUS, 401);
    assert_eq!(
        TokenError::Segments(2).arm_message(),
        "The access token is invalid."
    );
    assert!(TokenError::Segments(2)
        .to_string()
        .contains("2 dot-separated segment(s)"));
}

#[test]
fn audience_check() {
    let mut p = sp_payload();
    p["aud"] = "https://datalake.azure.net/".into();
    let claims = decode_jwt_claims(&jwt(p)).expect("valid");
    let e = claims.check_arm_audience().expect_err("wrong audience");
    assert_eq!(e.arm_code(), "InvalidAuthenticationTokenAudience");
    assert_eq!(
        e.arm_message(),
        "The access token has been obtained for wrong audience or resource 'https://datalake.azure.net/'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
    );
}
