//! Printers for workloads: `apps/v1` (deployments, replicasets, statefulsets,
//! daemonsets, controllerrevisions) and `batch/v1` (jobs, cronjobs).

use super::{
    age, arr, col, containers_and_images, format_label_selector, format_labels, human_duration, i,
    name, parse_time, s, since, wide, Column, Printer, Row, RowFn, AGE, CONTAINERS_DESC,
    IMAGES_DESC, NAME,
};
use chrono::{DateTime, Utc};
use ferrokube_api::ResourceInfo;
use serde_json::{json, Value};

pub(crate) fn printer(res: &ResourceInfo) -> Option<Printer> {
    let (columns, row): (&'static [Column], RowFn) = match (res.group, res.plural) {
        ("apps", "deployments") => (DEPLOYMENT_COLUMNS, deployment_row),
        ("apps", "replicasets") => (REPLICASET_COLUMNS, replicaset_row),
        ("apps", "statefulsets") => (STATEFULSET_COLUMNS, statefulset_row),
        ("apps", "daemonsets") => (DAEMONSET_COLUMNS, daemonset_row),
        ("apps", "controllerrevisions") => (CONTROLLERREVISION_COLUMNS, controllerrevision_row),
        ("batch", "jobs") => (JOB_COLUMNS, job_row),
        ("batch", "cronjobs") => (CRONJOB_COLUMNS, cronjob_row),
        _ => return None,
    };
    Some(Printer { columns, row })
}

const SELECTOR_DESC: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";

fn template_spec(obj: &Value) -> Option<&Value> {
    obj.pointer("/spec/template/spec")
}

fn desired_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "Number of the pod with ready state",
    ),
    col("Up-to-date", "string", "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", SELECTOR_DESC),
];

/// READY `ready/desired`, UP-TO-DATE, AVAILABLE; wide: containers, images,
/// selector.
pub(crate) fn deployment_row(d: &Value, now: DateTime<Utc>) -> Row {
    let (containers, images) = containers_and_images(template_spec(d));
    vec![
        json!(name(d)),
        json!(format!(
            "{}/{}",
            i(d, "/status/readyReplicas"),
            desired_replicas(d)
        )),
        json!(i(d, "/status/updatedReplicas")),
        json!(i(d, "/status/availableReplicas")),
        age(d, now),
        containers,
        images,
        json!(format_label_selector(d.pointer("/spec/selector"))),
    ]
    .into()
}

const REPLICASET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    col("Current", "integer", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    col("Ready", "integer", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn replicaset_row(rs: &Value, now: DateTime<Utc>) -> Row {
    let (containers, images) = containers_and_images(template_spec(rs));
    vec![
        json!(name(rs)),
        json!(desired_replicas(rs)),
        json!(i(rs, "/status/replicas")),
        json!(i(rs, "/status/readyReplicas")),
        age(rs, now),
        containers,
        images,
        json!(format_label_selector(rs.pointer("/spec/selector"))),
    ]
    .into()
}

const STATEFULSET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
];

fn statefulset_row(sts: &Value, now: DateTime<Utc>) -> Row {
    let (containers, images) = containers_and_images(template_spec(sts));
    vec![
        json!(name(sts)),
        json!(format!(
            "{}/{}",
            i(sts, "/status/readyReplicas"),
            desired_replicas(sts)
        )),
        age(sts, now),
        containers,
        images,
    ]
    .into()
}

const DAEMONSET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    col("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn daemonset_row(ds: &Value, now: DateTime<Utc>) -> Row {
    let (containers, images) = containers_and_images(template_spec(ds));
    vec![
        json!(name(ds)),
        json!(i(ds, "/status/desiredNumberScheduled")),
        json!(i(ds, "/status/currentNumberScheduled")),
        json!(i(ds, "/status/numberReady")),
        json!(i(ds, "/status/updatedNumberScheduled")),
        json!(i(ds, "/status/numberAvailable")),
        json!(format_labels(
            ds.pointer("/spec/template/spec/nodeSelector")
        )),
        age(ds, now),
        containers,
        images,
        json!(format_label_selector(ds.pointer("/spec/selector"))),
    ]
    .into()
}

const CONTROLLERREVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// CONTROLLER as `daemonset.apps/web`, from the controlling owner reference.
fn controllerrevision_row(cr: &Value, now: DateTime<Utc>) -> Row {
    let controller = arr(cr, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let group = s(o, "/apiVersion")
                .rsplit_once('/')
                .map(|(g, _)| g)
                .unwrap_or("");
            let kind = s(o, "/kind").to_lowercase();
            if group.is_empty() {
                format!("{kind}/{}", s(o, "/name"))
            } else {
                format!("{kind}.{group}/{}", s(o, "/name"))
            }
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        json!(name(cr)),
        json!(controller),
        json!(i(cr, "/revision")),
        age(cr, now),
    ]
    .into()
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "The completion status of the job. Shows the number of successful completions out of the desired number of completions."),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn has_true_condition(obj: &Value, type_: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == type_ && s(c, "/status") == "True")
}

/// STATUS (`Complete`, `Failed`, `Terminating`, `Suspended`, `Running`…),
/// COMPLETIONS `succeeded/completions`, DURATION from start to completion
/// (or to now while running).
fn job_row(job: &Value, now: DateTime<Utc>) -> Row {
    let status = if has_true_condition(job, "Complete") {
        "Complete"
    } else if has_true_condition(job, "Failed") {
        "Failed"
    } else if job.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_true_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has_true_condition(job, "Suspended") {
        "Suspended"
    } else if has_true_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let succeeded = i(job, "/status/succeeded");
    let completions = match (
        job.pointer("/spec/completions").and_then(Value::as_i64),
        job.pointer("/spec/parallelism").and_then(Value::as_i64),
    ) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    };
    let duration = match (
        parse_time(s(job, "/status/startTime")),
        parse_time(s(job, "/status/completionTime")),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(done)) => human_duration(done - start),
    };
    let (containers, images) = containers_and_images(template_spec(job));
    vec![
        json!(name(job)),
        json!(status),
        json!(completions),
        json!(duration),
        age(job, now),
        containers,
        images,
        json!(format_label_selector(job.pointer("/spec/selector"))),
    ]
    .into()
}

const CRONJOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn cronjob_row(cj: &Value, now: DateTime<Utc>) -> Row {
    let timezone = match s(cj, "/spec/timeZone") {
        "" => "<none>",
        tz => tz,
    };
    let suspend = match cj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last_schedule = match s(cj, "/status/lastScheduleTime") {
        "" => "<none>".to_string(),
        t => since(t, now),
    };
    let (containers, images) =
        containers_and_images(cj.pointer("/spec/jobTemplate/spec/template/spec"));
    vec![
        json!(name(cj)),
        json!(s(cj, "/spec/schedule")),
        json!(timezone),
        json!(suspend),
        json!(arr(cj, "/status/active").len()),
        json!(last_schedule),
        age(cj, now),
        containers,
        images,
        json!(format_label_selector(
            cj.pointer("/spec/jobTemplate/spec/selector")
        )),
    ]
    .into()
}
