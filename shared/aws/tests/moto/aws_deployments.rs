//! ECS and CodeDeploy deployments against moto. moto gives an ECS service one deployment,
//! created when the service is (its `createdAt`, task definition and rollout state are
//! real), and CodeDeploy deployments that stay `Created` and are filtered by application,
//! group and creation time as AWS does.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use iras_aws::aws_evidence_from_vars;
use iras_core::{Alert, DeploymentSource, EvidenceQuery, EvidenceWindow, SourceError};

use crate::support::Moto;

use iras_core::testing::vars;

/// An alert on `service` at `at`: deployments are looked for from a day before it.
fn query(service: &str, at: DateTime<Utc>) -> EvidenceQuery {
    EvidenceQuery {
        services: vec![service.to_string()],
        window: EvidenceWindow {
            start: at - Duration::minutes(30),
            end: at + Duration::minutes(15),
            deployments_since: at - Duration::hours(24),
        },
        alert: Alert {
            origin: None,
            title: format!("High error rate on {service}"),
            timestamp: at,
            service: Some(service.to_string()),
            fields: Default::default(),
        },
        since_change: None,
    }
}

fn deployments(moto: &Moto, pairs: &[(&str, &str)]) -> Arc<dyn DeploymentSource> {
    let mut e = aws_evidence_from_vars(&vars(pairs), &moto.config).unwrap();
    assert_eq!(e.evidence.deployments.len(), 1, "{e:?}");
    e.evidence.deployments.remove(0)
}

async fn ecs_service(moto: &Moto, cluster: &str, name: &str, family: &str) {
    let ecs = aws_sdk_ecs::Client::new(&moto.config);
    let arn = ecs
        .register_task_definition()
        .family(family)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image(format!("acme/{family}:2.3.1"))
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
        .task_definition_arn
        .unwrap();
    ecs.create_service()
        .cluster(cluster)
        .service_name(name)
        .task_definition(arn)
        .desired_count(2)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_ecs_deployment_before_the_alert_is_found_with_its_task_definition() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    aws_sdk_ecs::Client::new(&moto.config)
        .create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .unwrap();
    let before = Utc::now() - Duration::seconds(1);
    ecs_service(&moto, "prod", "checkout-svc", "checkout").await;
    ecs_service(&moto, "prod", "payments", "payments").await;
    let after = Utc::now() + Duration::seconds(1);

    let source = deployments(
        &moto,
        &[
            ("ECS_CLUSTER", "prod"),
            ("ECS_SERVICES", "checkout=checkout-svc,{service}"),
        ],
    );
    assert_eq!(source.name(), "ecs");
    let alert_at = after + Duration::minutes(10);
    let found = source
        .deployments(&query("checkout", alert_at))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d.service, "checkout");
    assert_eq!(d.version, "checkout:1");
    assert!(d.timestamp >= before && d.timestamp <= after, "{d:?}");
    assert!(
        d.description
            .contains("service checkout-svc in cluster prod")
            && d.description.contains("PRIMARY")
            // moto starts no tasks, so its rollouts stay in progress.
            && d.description.contains("rollout IN_PROGRESS"),
        "{}",
        d.description
    );

    // Through the template: payments is its own ECS name.
    let p = source
        .deployments(&query("payments", alert_at))
        .await
        .unwrap();
    assert_eq!(
        p.iter().map(|d| d.version.as_str()).collect::<Vec<_>>(),
        ["payments:1"]
    );

    // An alert from before the deploy does not see it; a service ECS does not run has none.
    let earlier = source
        .deployments(&query("checkout", before - Duration::hours(1)))
        .await
        .unwrap();
    assert!(earlier.is_empty(), "{earlier:?}");
    assert!(source
        .deployments(&query("cart", alert_at))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_missing_ecs_cluster_is_a_source_error() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let source = deployments(&moto, &[("ECS_CLUSTER", "staging")]);
    match source
        .deployments(&query("checkout", Utc::now()))
        .await
        .unwrap_err()
    {
        SourceError::Unavailable(m) => {
            assert!(
                m.starts_with("ecs: services checkout in cluster staging: "),
                "{m}"
            );
            assert!(m.contains("ClusterNotFoundException"), "{m}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

async fn codedeploy_group(moto: &Moto, app: &str, group: &str) {
    aws_sdk_codedeploy::Client::new(&moto.config)
        .create_deployment_group()
        .application_name(app)
        .deployment_group_name(group)
        .service_role_arn("arn:aws:iam::123456789012:role/codedeploy")
        .send()
        .await
        .unwrap();
}

async fn codedeploy_deploy(moto: &Moto, app: &str, group: &str, commit: &str, text: &str) {
    aws_sdk_codedeploy::Client::new(&moto.config)
        .create_deployment()
        .application_name(app)
        .deployment_group_name(group)
        .description(text)
        .revision(
            aws_sdk_codedeploy::types::RevisionLocation::builder()
                .revision_type(aws_sdk_codedeploy::types::RevisionLocationType::GitHub)
                .git_hub_location(
                    aws_sdk_codedeploy::types::GitHubLocation::builder()
                        .repository(format!("acme/{group}"))
                        .commit_id(commit)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_codedeploy_deployment_of_the_services_group_is_found() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    aws_sdk_codedeploy::Client::new(&moto.config)
        .create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    codedeploy_group(&moto, "shop", "checkout-prod").await;
    codedeploy_group(&moto, "shop", "payments-prod").await;
    let before = Utc::now() - Duration::seconds(1);
    codedeploy_deploy(
        &moto,
        "shop",
        "checkout-prod",
        "9f8e7d6c5b4a39281706",
        "release v2.3.1",
    )
    .await;
    codedeploy_deploy(
        &moto,
        "shop",
        "payments-prod",
        "1111111222222333333",
        "payments v9",
    )
    .await;
    let after = Utc::now() + Duration::seconds(1);

    let source = deployments(
        &moto,
        &[
            ("CODEDEPLOY_APPLICATION", "shop"),
            ("CODEDEPLOY_DEPLOYMENT_GROUPS", "{service}-prod"),
        ],
    );
    assert_eq!(source.name(), "codedeploy");
    let alert_at = after + Duration::minutes(5);
    let found = source
        .deployments(&query("checkout", alert_at))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(
        (d.service.as_str(), d.version.as_str()),
        ("checkout", "9f8e7d6")
    );
    assert!(d.timestamp >= before && d.timestamp <= after, "{d:?}");
    assert!(
        d.description.contains("of shop/checkout-prod: Created")
            && d.description.ends_with("; release v2.3.1"),
        "{}",
        d.description
    );

    // The creation-time range is sent: an alert a day before sees nothing. A service
    // without a deployment group here has no deployments.
    assert!(source
        .deployments(&query("checkout", before - Duration::hours(25)))
        .await
        .unwrap()
        .is_empty());
    assert!(source
        .deployments(&query("cart", alert_at))
        .await
        .unwrap()
        .is_empty());
}
