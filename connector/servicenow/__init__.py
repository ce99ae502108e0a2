"""ServiceNow (and ServiceNow-style ITSMs such as Service Flow): the Table API client, the keyset
query, and the mapping of a change record to a maintenance window. The only package that imports
pysnow.
"""
