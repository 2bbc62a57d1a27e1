"""The Azure Functions app: registers the blueprints from functions/ and nothing else."""

import azure.functions as func

from functions.http_api import bp as http_api

app = func.FunctionApp()
app.register_functions(http_api)
