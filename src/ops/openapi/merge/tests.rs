use super::*;

fn builds() -> Backend {
    Backend {
        name: "builds".into(),
        mount: "/builds".into(),
        document: json!({
            "openapi": "3.0.3",
            "info": {"title": "Builds", "version": "1"},
            "servers": [{"url": "http://builds-api.internal:8000"}],
            "tags": [{"name": "builds", "description": "Builds"}, {"name": "common"}],
            "paths": {
                "/v1/build": {
                    "servers": [{"url": "http://internal"}],
                    "get": {"operationId": "list", "tags": ["builds"],
                            "security": [{"internal": []}],
                            "responses": {"200": {"description": "ok", "content": {"application/json":
                                {"schema": {"$ref": "#/components/schemas/Build"}}}},
                                          "default": {"$ref": "#/components/responses/Error"}}}
                }
            },
            "components": {
                "schemas": {
                    "Build": {"type": "object", "properties": {"id": {"type": "string", "nullable": true}}},
                    "Error": {"type": "object", "properties": {"message": {"type": "string"}}}
                },
                "responses": {"Error": {"description": "error", "content": {"application/json":
                    {"schema": {"$ref": "#/components/schemas/Error"}}}}},
                "securitySchemes": {"internal": {"type": "http", "scheme": "basic"}}
            }
        }),
    }
}

fn jobs() -> Backend {
    Backend {
        name: "jobs".into(),
        mount: "/jobs".into(),
        document: json!({
            "openapi": "3.1.0",
            "info": {"title": "Jobs", "version": "2"},
            "tags": [{"name": "common", "description": "second"}, {"name": "jobs"}],
            "paths": {
                "/v1/tool/{tool}/jobs": {
                    "parameters": [{"$ref": "#/components/parameters/Tool"}],
                    "get": {"operationId": "list",
                            "responses": {"200": {"description": "ok", "content": {"application/json":
                                {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}}}}},
                                          "default": {"$ref": "#/components/responses/Error"}}}
                }
            },
            "components": {
                "schemas": {
                    "Error": {"type": "object", "properties": {"detail": {"type": "string"}}},
                    "jobs_Error": {"type": "string"}
                },
                "parameters": {"Tool": {"name": "tool", "in": "path", "required": true,
                                        "schema": {"type": "string"}}},
                "responses": {"Error": {"description": "jobs error", "content": {"application/json":
                    {"schema": {"$ref": "#/components/schemas/Error"}}}}}
            }
        }),
    }
}

fn settings() -> Settings {
    Settings {
        title: "Toolforge API".into(),
        version: "1.0.0".into(),
        description: None,
        servers: vec!["https://api.svc.toolforge.org".into()],
        security: vec![
            SecuritySchemeConfig::MutualTls,
            SecuritySchemeConfig::Bearer,
        ],
    }
}

#[test]
fn merges_paths_components_tags_and_security() {
    let doc = merge(vec![builds(), jobs()], &settings()).expect("merges");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Toolforge API");
    assert_eq!(
        doc["servers"],
        json!([{"url": "https://api.svc.toolforge.org"}])
    );
    let paths = doc["paths"].as_object().expect("paths");
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        vec!["/builds/v1/build", "/jobs/v1/tool/{tool}/jobs"]
    );
    // The first backend keeps its names; the second's colliding ones are
    // renamed, avoiding its own existing `jobs_Error`, refs following.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Error"]["properties"]["message"]["type"], "string");
    assert_eq!(schemas["jobs_Error"], json!({"type": "string"}));
    assert_eq!(
        schemas["jobs_Error_2"]["properties"]["detail"]["type"],
        "string"
    );
    let jobs_get = &doc["paths"]["/jobs/v1/tool/{tool}/jobs"]["get"];
    assert_eq!(
        jobs_get["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/jobs_Error_2"
    );
    assert_eq!(
        jobs_get["responses"]["default"]["$ref"],
        "#/components/responses/jobs_Error"
    );
    assert_eq!(
        doc["components"]["responses"]["jobs_Error"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/jobs_Error_2"
    );
    assert_eq!(jobs_get["operationId"], "jobs_list");
    assert_eq!(
        doc["paths"]["/builds/v1/build"]["get"]["operationId"],
        "list"
    );
    // 3.0 upgraded: nullable became a null type.
    assert_eq!(
        schemas["Build"]["properties"]["id"]["type"],
        json!(["string", "null"])
    );
    // Tags unioned, first description wins.
    assert_eq!(
        doc["tags"],
        json!([{"name": "builds", "description": "Builds"}, {"name": "common"}, {"name": "jobs"}])
    );
    // Backends' servers and security are gone; gatehouse's schemes are declared.
    assert!(doc["paths"]["/builds/v1/build"].get("servers").is_none());
    assert!(
        doc["paths"]["/builds/v1/build"]["get"]
            .get("security")
            .is_none()
    );
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("schemes");
    assert_eq!(
        schemes.keys().collect::<Vec<_>>(),
        vec!["bearerAuth", "mutualTLS"]
    );
    assert_eq!(schemes["mutualTLS"]["type"], "mutualTLS");
    assert_eq!(
        doc["security"],
        json!([{"mutualTLS": []}, {"bearerAuth": []}])
    );
}

#[test]
fn merging_is_deterministic() {
    let a = merge(vec![builds(), jobs()], &settings()).expect("merges");
    let b = merge(vec![builds(), jobs()], &settings()).expect("merges");
    assert_eq!(a.to_string(), b.to_string());
    // Order decides who keeps a name.
    let c = merge(vec![jobs(), builds()], &settings()).expect("merges");
    assert_eq!(
        c["components"]["schemas"]["Error"]["properties"]["detail"]["type"],
        "string"
    );
    assert_eq!(
        c["components"]["schemas"]["builds_Error"]["properties"]["message"]["type"],
        "string"
    );
}

#[test]
fn refusals() {
    let mut twice = jobs();
    twice.name = "jobs2".into();
    let err = merge(vec![jobs(), twice], &settings())
        .unwrap_err()
        .to_string();
    assert!(err.contains("served by two backends"), "{err}");

    let mut external = builds();
    external.document["paths"]["/v1/build"]["get"]["responses"]["default"] =
        json!({"$ref": "common.yaml#/components/responses/Error"});
    let err = merge(vec![external], &settings()).unwrap_err().to_string();
    assert!(
        err.contains("builds") && err.contains("external $ref"),
        "{err}"
    );

    for version in [json!("2.0"), json!(3), Value::Null] {
        let mut old = builds();
        old.document["openapi"] = version;
        let err = merge(vec![old], &settings()).unwrap_err().to_string();
        assert!(err.contains("OpenAPI"), "{err}");
    }
    let mut relative = builds();
    relative.document["paths"] = json!({"v1": {}});
    assert!(merge(vec![relative], &settings()).is_err());
}

#[test]
fn root_mount_and_no_security() {
    let mut root = builds();
    root.mount = String::new();
    let doc = merge(vec![root], &Settings::default()).expect("merges");
    assert!(doc["paths"].get("/v1/build").is_some());
    assert!(doc.get("security").is_none());
    assert!(doc["components"].get("securitySchemes").is_none());
}
