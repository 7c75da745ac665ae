// Herald browser SDK: see sdk/js/README
