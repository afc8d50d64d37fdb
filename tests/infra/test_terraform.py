"""Structural checks of infra/terraform over the parsed HCL: what the deployment promises
(OIDC pushes, dead letters kept, private GPU services, no keys, settings names) holds."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from .hcl_config import MODULE, REPO, TERRAFORM, Config, expression, sub_blocks, unquote
from workers.core.settings import settings_table

SETTINGS_NAMES = {row[0] for row in settings_table()}
ALL_TF_TEXT = "\n".join(p.read_text() for p in TERRAFORM.rglob("*.tf"))


def evaluate(value, config: Config) -> float:
    """A number from a literal, or from var./local. references and + - * arithmetic over them
    (variable defaults stand for the variables)."""
    if isinstance(value, (int, float)):
        return value
    text = expression(value)
    defaults, locals_ = config.variable_defaults(), config.locals()

    def substitute(match: re.Match) -> str:
        kind, name = match.groups()
        return str(evaluate(defaults[name] if kind == "var" else locals_[name], config))

    arithmetic = re.sub(r"\b(var|local)\.([a-z0-9_]+)", substitute, text)
    if not re.fullmatch(r"[\d\s+\-*().]+", arithmetic):
        raise AssertionError(f"cannot evaluate {text!r}")
    return eval(arithmetic)  # only digits and operators, checked above


def gpu_worker_calls(root: Config) -> dict[str, dict]:
    """stt/ser -> the gpu_worker module arguments with each.value.* filled in."""
    call = root.modules()["gpu_worker"]
    assert expression(call["for_each"]) == "local.gpu_workers"
    workers = root.locals()["gpu_workers"]
    calls = {}
    for name, values in workers.items():
        if name == "__is_block__":
            continue
        filled = {
            key: values[expression(arg).removeprefix("each.value.")]
            if expression(arg).startswith("each.value.")
            else arg
            for key, arg in call.items()
        }
        calls[name] = filled
    return calls


def push_worker_calls(root: Config) -> dict[str, dict]:
    return {**gpu_worker_calls(root), "joiner": root.modules()["joiner"]}


# --- keys and credentials -------------------------------------------------------------------
def test_no_service_account_key_or_key_file_anywhere(root, module):
    for config in (root, module):
        types = {kind for kind, _, _ in config.blocks("resource")}
        assert "google_service_account_key" not in types
    assert "google_service_account_key" not in ALL_TF_TEXT
    assert not re.search(r"\bcredentials\s*=", ALL_TF_TEXT), "provider credentials must come from ADC"
    assert not list(REPO.glob("infra/**/*.json")), "no JSON (key) files under infra/"


# --- Pub/Sub --------------------------------------------------------------------------------
def test_every_push_subscription_has_an_oidc_token_retry_policy_and_dead_letter_policy(root, module):
    push_subscriptions = 0
    for config in (root, module):
        for name, body in config.resources("google_pubsub_subscription").items():
            if not body.get("push_config"):
                continue
            push_subscriptions += 1
            (push,) = body["push_config"]
            (token,) = push["oidc_token"]
            assert token["service_account_email"] and token["audience"], name
            (dead_letter,) = body["dead_letter_policy"]
            assert dead_letter["dead_letter_topic"] and dead_letter["max_delivery_attempts"], name
            (retry,) = body["retry_policy"]
            assert retry["minimum_backoff"] and retry["maximum_backoff"], name
    assert push_subscriptions >= 1


def test_every_dead_letter_topic_has_a_pull_subscription_that_never_expires(module):
    subscriptions = module.resources("google_pubsub_subscription")
    dead_letter_topics = {
        expression(body["dead_letter_policy"][0]["dead_letter_topic"])
        for body in subscriptions.values()
        if body.get("dead_letter_policy")
    }
    assert dead_letter_topics == {"google_pubsub_topic.dead_letter.id"}
    pulls = [
        body
        for body in subscriptions.values()
        if not body.get("push_config") and expression(body["topic"]) in dead_letter_topics
    ]
    assert pulls, "a topic with no subscription drops what is published to it"
    for body in subscriptions.values():
        assert unquote(body["expiration_policy"][0]["ttl"]) == "", "subscriptions must not expire"


def test_pubsub_service_agent_may_forward_dead_letters(root, module):
    topic_grants = module.resources("google_pubsub_topic_iam_member").values()
    subscription_grants = module.resources("google_pubsub_subscription_iam_member").values()
    assert any(
        unquote(g["role"]) == "roles/pubsub.publisher"
        and expression(g["member"]) == "var.pubsub_service_agent"
        and "dead_letter" in g["topic"]
        for g in topic_grants
    )
    assert any(
        unquote(g["role"]) == "roles/pubsub.subscriber"
        and expression(g["member"]) == "var.pubsub_service_agent"
        and "google_pubsub_subscription.push" in g["subscription"]
        for g in subscription_grants
    )
    assert "@gcp-sa-pubsub.iam.gserviceaccount.com" in root.locals()["pubsub_agent"]
    for name, call in push_worker_calls(root).items():
        assert expression(call["pubsub_service_agent"]) == "local.pubsub_agent", name


def test_function_entry_point_is_the_cloud_event_function_in_trigger_main(root):
    (function,) = root.resources("google_cloudfunctions2_function").values()
    (build,) = function["build_config"]
    entry = unquote(build["entry_point"])
    tree = ast.parse((REPO / "trigger" / "main.py").read_text())
    decorated = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("cloud_event" in ast.unparse(decorator) for decorator in node.decorator_list)
    }
    assert entry in decorated, f"entry point {entry!r} is not one of the CloudEvent functions {decorated}"


def test_push_endpoints_match_the_services_routes(root):
    calls = push_worker_calls(root)
    for name in ("stt", "ser"):
        assert expression(calls[name]["topic_id"]) == "google_pubsub_topic.jobs.id"
        assert unquote(calls[name]["push_path"]) == "/push/job"
    assert expression(calls["joiner"]["topic_id"]) == "google_pubsub_topic.partials.id"
    assert unquote(calls["joiner"]["push_path"]) == "/push/partial"
    (push,) = Config(MODULE).resources("google_pubsub_subscription")["push"]["push_config"]
    assert unquote(push["push_endpoint"]).endswith("${var.push_path}")


def test_delivery_settings_delay_a_burst_rather_than_dead_letter_it(root):
    ack = evaluate(root.variable_defaults()["ack_deadline_seconds"], root)
    attempts = evaluate(root.variable_defaults()["max_delivery_attempts"], root)
    max_backoff = evaluate(root.variable_defaults()["retry_maximum_backoff_seconds"], root)
    assert ack == 600, "ack deadline sized to the longest job a push may take (Pub/Sub's maximum)"
    assert 5 <= attempts <= 100 and max_backoff <= 600
    # docs/deploy.md: a message survives about attempts x max_backoff seconds of 429s; at the
    # default caps that must cover an hour of queueing at least.
    assert attempts * max_backoff >= 3600 * 4


# --- Cloud Run ------------------------------------------------------------------------------
def test_gpu_workers_take_their_jobs_and_queue_on_one_l4_and_scale_to_zero(root):
    calls = gpu_worker_calls(root)
    assert set(calls) == {"stt", "ser"}
    for name, call in calls.items():
        assert call["gpu"] is True, name
        assert evaluate(call["cpu"], root) >= 4 and evaluate(call["memory"], root) >= 16, name
        defaults = root.variable_defaults()
        running, waiting = (evaluate(defaults[v], root) for v in ("gpu_worker_concurrency", "gpu_worker_queue"))
        assert evaluate(call["concurrency"], root) == running + waiting and running >= 1, name
        assert "WORKER_CONCURRENCY" in json.dumps(root.locals()["gpu_worker_env"]), "the service knows its slots"
        assert evaluate(call["min_instances"], root) == 0, name
        assert expression(call["max_instances"]).startswith("var."), f"{name}: max instances is a variable"
        assert evaluate(call["request_timeout_seconds"], root) >= evaluate(call["ack_deadline_seconds"], root)
        assert expression(call["image"]) == "local.gpu_image"


def test_push_worker_module_attaches_an_l4_with_a_healthz_startup_probe(module):
    (service,) = module.resources("google_cloud_run_v2_service").values()
    (template,) = service["template"]
    (selector,) = [d['"node_selector"'] for d in template["dynamic"] if '"node_selector"' in d]
    assert expression(selector["for_each"]) == 'var.gpu ? ["nvidia-l4"] : []'
    assert expression(selector["content"][0]["accelerator"]) == "node_selector.value"
    assert '"nvidia.com/gpu" = "1"' in (MODULE / "main.tf").read_text()
    assert expression(template["gpu_zonal_redundancy_disabled"]).startswith("var.gpu ?")
    (container,) = template["containers"]
    (probe,) = container["startup_probe"]
    assert unquote(probe["http_get"][0]["path"]) == "/healthz"
    assert expression(container["resources"][0]["cpu_idle"]) == "!var.gpu", "GPU instances keep their CPU"
    preconditions = json.dumps(service["lifecycle"])
    assert "var.request_timeout_seconds >= var.ack_deadline_seconds" in preconditions
    assert "var.concurrency <= 16" in preconditions


def test_no_service_is_public(root, module):
    public = ("allUsers", "allAuthenticatedUsers")
    for config in (root, module):
        for kind, name, body in config.blocks("resource"):
            if kind.endswith("_iam_member"):
                assert not any(p in str(body["member"]) for p in public), f"{kind}.{name}"
        for body in config.resources("google_cloud_run_v2_service").values():
            assert body.get("invoker_iam_disabled") is False
        for kind, _, _ in config.blocks("resource"):
            assert not kind.endswith("_iam_policy") and not kind.endswith("_iam_binding"), kind
    (invokers,) = [body for name, _, body in root.blocks("variable") if name == "api_invokers"]
    assert all(p in json.dumps(invokers["validation"]) for p in public), "api_invokers refuses public members"


def test_push_invoker_may_invoke_only_its_service(module):
    (grant,) = module.resources("google_cloud_run_v2_service_iam_member").values()
    assert unquote(grant["role"]) == "roles/run.invoker"
    assert expression(grant["name"]) == "google_cloud_run_v2_service.worker.name"
    assert "var.push_service_account_email" in grant["member"]


# --- identities -----------------------------------------------------------------------------
def test_one_service_account_per_component_and_no_broad_roles(root):
    components = set(root.locals()["components"]) - {"__is_block__"}
    assert {"trigger", "stt", "ser", "joiner", "api", "push", "backfill", "loader", "scheduler"} <= components
    assert not re.search(r"roles/(owner|editor|viewer|storage\.admin|pubsub\.admin|run\.admin)\"", ALL_TF_TEXT)
    project_grants = root.resources("google_project_iam_member").values()
    unconditional = {unquote(b["role"]) for b in project_grants if not b.get("condition")}
    assert unconditional <= {
        "roles/eventarc.eventReceiver",
        "roles/pubsub.publisher",  # the GCS service agent, for Eventarc storage triggers
        "roles/bigquery.jobUser",
        "roles/logging.logWriter",
    }
    # Storage at project level only under a condition naming Google's function-source buckets.
    for grant in (b for b in project_grants if b.get("condition")):
        (condition,) = grant["condition"]
        assert unquote(grant["role"]) == "roles/storage.objectViewer"
        assert 'startsWith(\\"projects/_/buckets/gcf-v2-sources-\\")' in str(condition["expression"])


def test_workers_get_bucket_roles_only_on_their_own_buckets(root):
    grants = {tuple(unquote(x) for x in g) for g in root.locals()["bucket_grants"]}
    by_component: dict[str, set[tuple[str, str]]] = {}
    for bucket, role, component in grants:
        by_component.setdefault(component, set()).add((bucket, role))
    assert {b for b, _ in by_component["stt"]} == {"inbox", "staging"}
    assert {b for b, _ in by_component["joiner"]} == {"staging", "results"}
    assert "api" not in by_component and "trigger" not in by_component


# --- settings names -------------------------------------------------------------------------
def environment_names(root: Config, module: Config) -> set[str]:
    names: set[str] = set()
    for config in (root, module):
        for key, value in config.locals().items():
            if key == "env" or key.endswith("_env"):
                names |= env_keys(value)
        for value in config.locals().get("scheduled_jobs", {}).values():
            if isinstance(value, dict):
                names |= env_keys(value.get("env", {}))
        for _, _, body in config.blocks("resource"):
            for service_config in body.get("service_config", []):
                names |= env_keys(service_config.get("environment_variables", {}))
    return names


def env_keys(value) -> set[str]:
    if isinstance(value, dict):
        return {k for k in value if k != "__is_block__"}
    return set(re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", str(value)))


def test_environment_names_set_in_terraform_are_settings_names(root, module):
    names = environment_names(root, module)
    expected = {"ROLE", "GOOGLE_CLOUD_PROJECT", "PUSH_AUDIENCE", "PUSH_SERVICE_ACCOUNT", "STT_URL",
                "STT_AUDIENCE", "JOBS_TOPIC", "PARTIALS_TOPIC", "BIGQUERY_TABLE", "RESULTS_BUCKET"}
    assert expected <= names, f"the collector missed {expected - names}"
    assert names <= SETTINGS_NAMES, f"not in workers/core/settings.py: {sorted(names - SETTINGS_NAMES)}"
    assert "PORT" not in names, "Cloud Run reserves PORT"


def test_every_container_env_comes_from_a_checked_map(root, module):
    for config in (root, module):
        for _, name, body in config.blocks("resource"):
            for template in body.get("template", []):
                inner = template.get("template", [template])
                for tpl in inner:
                    for container in tpl.get("containers", []):
                        assert not container.get("env"), f"{name}: use a dynamic env over a *_env map"
                        for env in sub_blocks(container, "env"):
                            assert expression(env["name"]) == "env.key"


# --- BigQuery -------------------------------------------------------------------------------
def test_bigquery_table_schema_is_the_repository_schema_file(root):
    (table,) = root.resources("google_bigquery_table").values()
    assert expression(table["schema"]) == "file(local.bigquery_schema_path)"
    path = unquote(root.locals()["bigquery_schema_path"]).replace("${path.module}", str(TERRAFORM))
    schema_file = Path(path).resolve()
    assert schema_file == REPO / "schemas" / "bigquery" / "results.json"
    fields = {f["name"]: f["type"] for f in json.loads(schema_file.read_text())}
    partition = unquote(root.locals()["bigquery_partition_field"])
    assert fields.get(partition) == "TIMESTAMP", f"partition column {partition} is not a top-level TIMESTAMP"
    (partitioning,) = sub_blocks(table, "time_partitioning")
    assert expression(partitioning["field"]) == "local.bigquery_partition_field"
    assert all(unquote(c) in fields for c in table["clustering"]), "clustered on a column the schema lacks"


# --- buckets --------------------------------------------------------------------------------
def test_buckets_are_uniform_private_and_expire_personal_data(root):
    (bucket,) = root.resources("google_storage_bucket").values()
    assert bucket["uniform_bucket_level_access"] is True
    assert unquote(bucket["public_access_prevention"]) == "enforced"
    (rule,) = sub_blocks(bucket, "lifecycle_rule")
    assert unquote(rule["action"][0]["type"]) == "Delete"
    retention = root.locals()["bucket_retention_days"]
    assert expression(retention["staging"]) == "var.staging_retention_days"
    assert expression(retention["inbox"]) == "var.inbox_retention_days"
    assert expression(retention["results"]) == "var.results_retention_days"
    assert sub_blocks(bucket, "encryption"), "optional CMEK"


# --- documentation --------------------------------------------------------------------------
@pytest.mark.parametrize("folder", [TERRAFORM, MODULE], ids=["root", "push_worker"])
def test_every_variable_and_output_is_documented(folder):
    config = Config(folder)
    for kind in ("variable", "output"):
        for name, _, body in config.blocks(kind):
            assert unquote(body.get("description", "")), f"{kind} {name} has no description"


def test_module_calls_pass_only_declared_variables_and_all_required_ones(root, module):
    declared = module.variable_defaults()
    required = {name for name, _, body in module.blocks("variable") if "default" not in body}
    for name, call in root.modules().items():
        arguments = set(call) - {"source", "for_each", "depends_on", "__is_block__"}
        assert arguments <= set(declared), f"{name}: unknown {arguments - set(declared)}"
        assert required <= arguments, f"{name}: missing {required - arguments}"


def test_deployed_services_refuse_bodies_over_cloud_runs_32_mib_request_limit(root, module):
    locals_ = root.locals()
    assert evaluate(locals_["max_request_bytes"], root) == 32 * 1024 * 1024
    assert expression(locals_["common_env"]["MAX_REQUEST_BYTES"]) == "tostring(local.max_request_bytes)"
    for role in ("gpu_worker_env", "joiner_env", "api_env"):
        assert expression(locals_[role]).startswith("merge(local.common_env"), role


def test_with_cmek_the_worker_dead_letter_topics_wait_for_the_pubsub_agents_key_grant(root, module):
    (topic,) = module.resources("google_pubsub_topic").values()
    assert expression(topic["kms_key_name"]) == "var.kms_key_name"
    for name in ("gpu_worker", "joiner"):
        waits_for = [expression(d) for d in root.modules()[name].get("depends_on", [])]
        assert "google_kms_crypto_key_iam_member.service_agents" in waits_for, name


def test_the_scheduled_load_reads_a_window_that_overlaps_its_hourly_schedule(root):
    args = expression(root.locals()["scheduled_jobs"]["loader"]["args"])
    assert '["--updated-since", var.load_bigquery_window]' in args
    window = unquote(root.variable_defaults()["load_bigquery_window"])
    hours = int(window[:-1]) * {"m": 1 / 60, "h": 1, "d": 24}[window[-1]]
    assert unquote(root.variable_defaults()["load_bigquery_schedule"]) == "30 * * * *"  # hourly
    assert 1 < hours <= 24, f"a window of {window} does not overlap hourly runs, or re-reads too much"


def test_images_are_deployed_by_commit_tag_never_latest(root):
    variables = {name: body for name, _, body in root.blocks("variable")}
    assert "default" not in variables["image_tag"], "the tag must be given: the commit"
    (validation,) = variables["image_tag"]["validation"]
    assert 'var.image_tag != "latest"' in expression(validation["condition"])
    assert "_TAG" not in yaml.safe_load((REPO / "cloudbuild.yaml").read_text())["substitutions"]


def test_state_lives_in_a_gcs_backend_and_image_builds_run_as_their_own_account(root):
    backends = [b for parsed in root.files.values() for t in parsed.get("terraform", []) for b in t.get("backend", [])]
    assert [[unquote(kind) for kind in b] for b in backends] == [["gcs"]]
    assert "imagebuild" in root.locals()["components"]
    for resource_type, name in (("google_artifact_registry_repository_iam_member", "builds_push_images"),
                                ("google_project_iam_member", "builds_write_logs")):
        assert "imagebuild" in expression(root.resources(resource_type)[name]["for_each"]), name


def test_deploy_doc_lists_act_as_the_state_bucket_the_build_account_and_todays_cost():
    doc = (REPO / "docs" / "deploy.md").read_text()
    assert "Service Account User" in doc and "actAs" in doc
    assert "≈ $25/day" in doc and "$20/day" not in doc
    assert "-backend-config" in doc and "--service-account" in doc


def test_a_scheduled_healer_republishes_stuck_jobs_under_an_account_that_may(root):
    healer = root.locals()["scheduled_jobs"]["healer"]
    assert [unquote(a) for a in healer["args"]][:3] == ["stuck", "--republish", "--older-than"]
    assert unquote(healer["account"]) == "backfill"
    grants = {tuple(unquote(x) for x in g) for g in root.locals()["bucket_grants"]}
    assert {("inbox", "roles/storage.objectViewer", "backfill"),
            ("staging", "roles/storage.objectUser", "backfill")} <= grants
    assert "jobs/backfill" in {unquote(k) for k in root.locals()["topic_publishers"]}
    (job,) = root.resources("google_cloud_run_v2_job").values()
    assert "each.value.account" in str(job["template"])
    defaults = root.variable_defaults()
    assert defaults["stuck_after_minutes"] * 60 > defaults["ack_deadline_seconds"], "a job in flight is not stuck"
    assert unquote(defaults["healer_schedule"]) is not None
