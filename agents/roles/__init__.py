"""The four roles' specs by name (their order and their stages are in medbuilder/stages/registry.py)."""

from medbuilder.agents.roles import data_engineer, model_trainer, module_architect, task_manager

ROLES = {role.name: role for role in (task_manager.ROLE, data_engineer.ROLE, module_architect.ROLE, model_trainer.ROLE)}
