use super::*;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    PodStatus,
};

fn pod(status: ContainerStatus) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some("p".into());
    p.status = Some(PodStatus {
        container_statuses: Some(vec![status]),
        ..Default::default()
    });
    p
}

fn terminated(id: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(id.into()),
        exit_code: 1,
        ..Default::default()
    }
}

#[test]
fn logs_come_from_the_running_attempt_or_the_previous_one() {
    let running = ContainerStatus {
        name: "main".into(),
        container_id: Some("containerd://new".into()),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }),
        last_state: Some(ContainerState {
            terminated: Some(terminated("containerd://old")),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = pod(running.clone());
    assert_eq!(log_container_id(&p, "main", false), Ok("new".into()));
    assert_eq!(log_container_id(&p, "main", true), Ok("old".into()));

    let first_run = pod(ContainerStatus {
        last_state: None,
        ..running
    });
    assert_eq!(
        log_container_id(&first_run, "main", true),
        Err(r#"previous terminated container "main" in pod "p" not found"#.into())
    );
}

#[test]
fn a_crash_looping_container_shows_its_last_run() {
    let p = pod(ContainerStatus {
        name: "main".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        last_state: Some(ContainerState {
            terminated: Some(terminated("containerd://dead")),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(log_container_id(&p, "main", false), Ok("dead".into()));
}

#[test]
fn a_container_not_started_yet_is_waiting() {
    let p = pod(ContainerStatus {
        name: "main".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        log_container_id(&p, "main", false),
        Err(r#"container "main" in pod "p" is waiting to start: ContainerCreating"#.into())
    );
    let no_status = Pod { status: None, ..p };
    assert_eq!(
        log_container_id(&no_status, "main", false),
        Err(r#"container "main" in pod "p" is waiting to start: ContainerCreating"#.into())
    );
}

#[test]
fn negative_log_options_are_refused_by_name() {
    let err = log_options(&pb::ContainerLogsRequest {
        tail_lines: Some(-1),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.message().contains("tailLines"), "{err}");
    let opts = log_options(&pb::ContainerLogsRequest {
        since_time: "2024-05-01T10:00:00Z".into(),
        timestamps: true,
        tail_lines: Some(3),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(opts.tail_lines, Some(3));
    assert!(opts.timestamps);
    assert_eq!(
        opts.since.unwrap().to_rfc3339(),
        "2024-05-01T10:00:00+00:00"
    );
}
