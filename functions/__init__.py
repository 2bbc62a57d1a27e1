"""The Azure Functions blueprints (timers, queues, HTTP): decode the trigger, call one service function, log.
May import: any layer of shared/ (ARCHITECTURE.md); nothing imports functions/ but function_app.py."""
