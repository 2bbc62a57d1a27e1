"""The Azure Functions app: registers the blueprints from functions/ and nothing else."""

import azure.functions as func

from functions.alerts import bp as alerts
from functions.dashboard import bp as dashboard
from functions.http_api import bp as http_api
from functions.queues import bp as queues
from functions.timers import bp as timers

app = func.FunctionApp()
app.register_functions(timers)
app.register_functions(queues)
app.register_functions(http_api)
app.register_functions(alerts)
app.register_functions(dashboard)
