{#-
  The UTC day a Dagster partition names, passed by the dbt asset as ``--vars '{"day": "YYYY-MM-DD"}'``, as a
  date (a malformed day fails the build); none when the var is not given (build every day). Incremental marts
  filter their new rows to it and delete+insert replaces exactly those rows.
-#}
{% macro partition_day() %}
    {%- set day = var('day', none) -%}
    {%- if day is none or day == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(modules.datetime.date.fromisoformat(day | string)) }}
{% endmacro %}

{#- A where-clause term: ``column`` is the partition's day, or ``true`` when dbt builds every day. -#}
{% macro on_partition_day(column) %}
    {%- set day = partition_day() -%}
    {%- if day is none -%}
        true
    {%- else -%}
        {{ column }} = '{{ day }}'::date
    {%- endif -%}
{% endmacro %}
