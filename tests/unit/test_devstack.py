"""dev-stack's supervision: a child that dies is named, a service is restarted, a crash loop or
any other child stops the stack with a non-zero status."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.stack import supervise


class Child:
    """A process whose poll() answers the given exit statuses in turn (None: running), the last forever."""

    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses)

    def poll(self) -> int | None:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status == "interrupt":
            raise KeyboardInterrupt
        return status


class Process:
    def __init__(self, name: str, folder: Path, *statuses) -> None:
        self.proc = Child(*statuses)
        self.log_path = folder / f"{name}.log"
        self.log_path.write_text(f"{name}: last words\n")

    def log_tail(self) -> str:
        return self.log_path.read_text()


class Stack:
    def __init__(self, processes: dict[str, Process], after_restart: tuple) -> None:
        self.processes = processes
        self.after_restart = after_restart
        self.restarted: list[str] = []

    def restart(self, role: str) -> None:
        self.restarted.append(role)
        self.processes[role].proc = Child(*self.after_restart)


def stack_of(tmp_path: Path, after_restart=(None,), **statuses) -> Stack:
    roles = ("stt", "ser", "joiner", "trigger")
    return Stack({r: Process(r, tmp_path, *statuses.get(r, (None,))) for r in roles}, after_restart)


def test_a_dead_service_is_named_and_restarted_and_a_crash_loop_stops_the_stack(tmp_path, capsys):
    stack = stack_of(tmp_path, after_restart=(None, None, -9), stt=(None, -9))
    assert supervise(stack, {}, poll_seconds=0) == 1
    assert stack.restarted == ["stt"]
    err = capsys.readouterr().err
    assert "the stt process exited with status -9" in err and "stt: last words" in err
    assert "restarting stt" in err and "stt died again" in err


@pytest.mark.parametrize("dead", ["trigger", "pubsub-emulator"])
def test_a_child_that_cannot_be_restarted_stops_the_stack_with_its_name(tmp_path, capsys, dead):
    stack = stack_of(tmp_path, **({dead: (None, 3)} if dead == "trigger" else {}))
    emulators = {"pubsub-emulator": Process("pubsub-emulator", tmp_path, None, None, 3)} if dead != "trigger" else {}
    assert supervise(stack, emulators, poll_seconds=0) == 1
    assert stack.restarted == []
    assert f"the {dead} process exited with status 3" in capsys.readouterr().err


def test_ctrl_c_stops_a_healthy_stack_with_status_zero(tmp_path):
    stack = stack_of(tmp_path, joiner=(None, None, "interrupt"))
    assert supervise(stack, {}, poll_seconds=0) == 0


def test_the_dev_stacks_delivery_settings_are_checked_against_terraforms():
    from tests.infra.hcl_config import TERRAFORM, Config
    from devstack.stack import DEV_STACK_DELIVERY, PRODUCTION_DELIVERY

    defaults = Config(TERRAFORM).variable_defaults()
    deployed = (defaults["ack_deadline_seconds"], defaults["max_delivery_attempts"],
                (defaults["retry_minimum_backoff_seconds"], defaults["retry_maximum_backoff_seconds"]))
    assert deployed == (PRODUCTION_DELIVERY.ack_deadline_seconds, PRODUCTION_DELIVERY.max_delivery_attempts,
                        PRODUCTION_DELIVERY.backoff_seconds), "Terraform changed: revisit DEV_STACK_DELIVERY"
    # A long job is pushed twice only after the same deadline as in production.
    assert DEV_STACK_DELIVERY.ack_deadline_seconds == PRODUCTION_DELIVERY.ack_deadline_seconds
