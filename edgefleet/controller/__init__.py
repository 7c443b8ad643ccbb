"""edgefleet/controller"""
