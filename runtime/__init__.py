"""fa3d.runtime"""
