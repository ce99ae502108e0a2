"""Alertmanager: the v2 API client, the silence settings, the pure plan of which silences a window
needs, and their application and delivery.
"""
