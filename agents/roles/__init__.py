"""The four roles, by name, in the order a build runs them."""

from medbuilder.agents.roles import data_engineer, model_trainer, module_architect, task_manager

ROLES = {
    "task_manager": task_manager.ROLE,
    "data_engineer": data_engineer.ROLE,
    "module_architect": module_architect.ROLE,
    "model_trainer": model_trainer.ROLE,
}
