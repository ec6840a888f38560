"""SOAP sources through zeep, against a real HTTP server on loopback serving a WSDL and answering
the operation with SOAP envelopes."""

import pandas as pd
import pytest
from werkzeug import Request, Response

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.connectors.soap import soap_records
from memories_dagster.specs.integration import DataSource

WSDL = """<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
             xmlns:tns="urn:erp" xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:erp" name="Erp">
  <types>
    <xsd:schema targetNamespace="urn:erp" elementFormDefault="qualified">
      <xsd:element name="GetInvoices">
        <xsd:complexType><xsd:sequence><xsd:element name="since" type="xsd:date"/></xsd:sequence></xsd:complexType>
      </xsd:element>
      <xsd:element name="GetInvoicesResponse">
        <xsd:complexType><xsd:sequence>
          <xsd:element name="Invoice" minOccurs="0" maxOccurs="unbounded">
            <xsd:complexType><xsd:sequence>
              <xsd:element name="number" type="xsd:string"/>
              <xsd:element name="amount" type="xsd:decimal"/>
              <xsd:element name="customer" type="xsd:string"/>
            </xsd:sequence></xsd:complexType>
          </xsd:element>
        </xsd:sequence></xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </types>
  <message name="GetInvoicesIn"><part name="parameters" element="tns:GetInvoices"/></message>
  <message name="GetInvoicesOut"><part name="parameters" element="tns:GetInvoicesResponse"/></message>
  <portType name="ErpPort"><operation name="GetInvoices"><input message="tns:GetInvoicesIn"/><output message="tns:GetInvoicesOut"/></operation></portType>
  <binding name="ErpBinding" type="tns:ErpPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="GetInvoices"><soap:operation soapAction="urn:erp#GetInvoices"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>
  <service name="ErpService"><port name="ErpPort" binding="tns:ErpBinding"><soap:address location="ENDPOINT"/></port></service>
</definitions>"""

RESPONSE = """<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
  <GetInvoicesResponse xmlns="urn:erp">
    <Invoice><number>INV-1</number><amount>120.50</amount><customer>ann</customer></Invoice>
    <Invoice><number>INV-2</number><amount>-3.00</amount><customer>bob</customer></Invoice>
  </GetInvoicesResponse>
</soap:Body></soap:Envelope>"""

FAULT = """<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
  <faultcode>soap:Client</faultcode><faultstring>date out of range</faultstring>
</soap:Fault></soap:Body></soap:Envelope>"""


@pytest.fixture
def erp(httpserver):
    seen = {}

    def endpoint(request: Request) -> Response:
        body = request.data.decode()
        seen["body"], seen["auth"] = body, request.authorization
        if "1900-01-01" in body:
            return Response(FAULT, status=500, content_type="text/xml")
        return Response(RESPONSE, content_type="text/xml")

    httpserver.expect_request("/erp.wsdl").respond_with_data(WSDL.replace("ENDPOINT", httpserver.url_for("/erp")), content_type="text/xml")
    httpserver.expect_request("/erp", method="POST").respond_with_handler(endpoint)
    return httpserver.url_for("/erp.wsdl"), seen


def source(since="2024-01-01", operation="GetInvoices") -> DataSource:
    return DataSource(source_name="erp", source_type="soap", connection_string="x",
                      authentication={"username": "svc", "password": "pw-secret-1"},
                      soap={"operation": operation, "arguments": {"since": since}, "records_path": "Invoice"})


def test_an_operation_returns_records(erp):
    wsdl, seen = erp
    records = list(soap_records(source(), wsdl, lambda text, where: text))
    assert [(r["number"], str(r["amount"])) for r in records] == [("INV-1", "120.50"), ("INV-2", "-3.00")]
    assert "<ns0:since>2024-01-01</ns0:since>" in seen["body"] and seen["auth"].username == "svc"


def test_faults_and_unknown_operations_are_named(erp):
    wsdl, _ = erp
    with pytest.raises(ConnectorError, match="source 'erp': the service answered with a SOAP fault: date out of range"):
        list(soap_records(source(since="1900-01-01"), wsdl, lambda text, where: text))
    with pytest.raises(ConnectorError, match="source 'erp': the WSDL has no operation 'GetOrders'"):
        list(soap_records(source(operation="GetOrders"), wsdl, lambda text, where: text))


def test_a_soap_source_materializes_through_dagster(erp, tmp_path, materialize_spec):
    wsdl, _ = erp
    result = materialize_spec("invoices", {
        "integration_config": {
            "data_sources": [{"source_name": "erp", "source_type": "soap", "connection_string": wsdl,
                              "soap": {"operation": "GetInvoices", "arguments": {"since": "2024-01-01"}, "records_path": "Invoice"}}],
            "transformation_rules": [{"rule_name": "positive", "transformation_type": "validation", "transformation_logic": "amount > 0"}],
        },
        "output_config": {"output_format": "csv", "output_destination": "output/invoices.csv"},
    })
    assert result.success
    assert pd.read_csv(tmp_path / "output" / "invoices.csv")["number"].tolist() == ["INV-1"]
